"""Copy a ``MultiHeadAttention`` to and from ``torch.nn.MultiheadAttention``.

torch is imported here, lazily, only when one of these functions is called.
torch packs the q/k/v weights into one (3E, E) ``in_proj_weight`` when
kdim == vdim == embed_dim (separate ``q/k/v_proj_weight`` otherwise) and the
three biases into one ``in_proj_bias``; this module keeps them apart, under
the names ``q_proj.weight``, ``k_proj.bias``, ...
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..optional import import_torch
from ..validation import describe

PROJECTIONS = ("q_proj", "k_proj", "v_proj")


def torch_state(torch_module: Any, *, grads: bool = False) -> dict[str, np.ndarray]:
    """The parameters (or, with ``grads=True``, their ``.grad``) of a ``torch.nn.MultiheadAttention``,
    under this library's names: ``in_proj_weight`` / ``in_proj_bias`` split into q, k, v.
    """
    m = torch_module

    def numpy(tensor: Any) -> np.ndarray:
        tensor = tensor.grad if grads else tensor
        return tensor.detach().cpu().numpy().copy()

    if m.in_proj_weight is not None:
        weights = numpy(m.in_proj_weight).reshape(3, -1, m.embed_dim)  # the packed rows, in q, k, v order
    else:
        weights = [numpy(w) for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)]
    state = {f"{name}.weight": w for name, w in zip(PROJECTIONS, weights)}
    state["out_proj.weight"] = numpy(m.out_proj.weight)
    if m.in_proj_bias is not None:
        state.update(zip((f"{name}.bias" for name in PROJECTIONS), numpy(m.in_proj_bias).reshape(3, -1)))
    if m.out_proj.bias is not None:
        state["out_proj.bias"] = numpy(m.out_proj.bias)
    if m.bias_k is not None:
        state["bias_k"], state["bias_v"] = numpy(m.bias_k), numpy(m.bias_v)
    return state


def from_torch(cls: type, torch_module: Any, *, impl: str = "dense", rng: Any = None) -> Any:
    """A ``cls`` (MultiHeadAttention) with the options, parameters and mode of ``torch_module``."""
    torch = import_torch("MultiHeadAttention.from_torch")
    if not isinstance(torch_module, torch.nn.MultiheadAttention):
        raise TypeError(f"torch_module must be a torch.nn.MultiheadAttention; got {describe(torch_module)}")
    m = torch_module
    dtypes = {torch.float32: np.float32, torch.float64: np.float64}
    if m.out_proj.weight.dtype not in dtypes:
        raise TypeError(
            f"torch_module must have float32 or float64 parameters; got {m.out_proj.weight.dtype}"
        )
    if (m.in_proj_bias is None) != (m.out_proj.bias is None):
        raise ValueError(
            "torch_module must have biases on all four projections or on none (bias=True or False); "
            f"got in_proj_bias {'None' if m.in_proj_bias is None else 'set'} and "
            f"out_proj.bias {'None' if m.out_proj.bias is None else 'set'}"
        )
    module = cls(
        m.embed_dim, m.num_heads, m.dropout, m.in_proj_bias is not None, m.bias_k is not None,
        m.add_zero_attn, m.kdim, m.vdim, m.batch_first,
        impl=impl, dtype=dtypes[m.out_proj.weight.dtype], rng=rng,
    )
    module.load_state_dict(torch_state(m))
    module.train(m.training)
    return module


def to_torch(module: Any) -> Any:
    """The ``torch.nn.MultiheadAttention`` with the options, parameters and mode of ``module``."""
    torch = import_torch("MultiHeadAttention.to_torch")
    if module.num_kv_heads != module.num_heads:
        raise ValueError(
            "torch.nn.MultiheadAttention has no grouped-query attention: to_torch needs num_kv_heads == "
            f"num_heads; got num_kv_heads={module.num_kv_heads}, num_heads={module.num_heads}"
        )
    p = module.params
    m = torch.nn.MultiheadAttention(
        module.embed_dim, module.num_heads, module.dropout, module.bias, module.add_bias_kv,
        module.add_zero_attn, module.kdim, module.vdim, module.batch_first,
        dtype=torch.float32 if module.dtype == np.float32 else torch.float64,
    )
    weights = [torch.from_numpy(p[f"{name}.weight"]) for name in PROJECTIONS]
    with torch.no_grad():
        if m.in_proj_weight is not None:
            m.in_proj_weight.copy_(torch.cat(weights))
        else:
            for target, weight in zip((m.q_proj_weight, m.k_proj_weight, m.v_proj_weight), weights):
                target.copy_(weight)
        m.out_proj.weight.copy_(torch.from_numpy(p["out_proj.weight"]))
        if module.bias:
            m.in_proj_bias.copy_(torch.cat([torch.from_numpy(p[f"{name}.bias"]) for name in PROJECTIONS]))
            m.out_proj.bias.copy_(torch.from_numpy(p["out_proj.bias"]))
        if module.add_bias_kv:
            m.bias_k.copy_(torch.from_numpy(p["bias_k"]))
            m.bias_v.copy_(torch.from_numpy(p["bias_v"]))
    m.train(module.training)
    return m

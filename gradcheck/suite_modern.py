"""The entries of ``python -m gradcheck`` for today's attention: every option of the attention pairs, alone
and combined, and :class:`numpy_attention.CausalSelfAttention` (``--only modern`` runs them).

Each option entry runs the pair with seeded q, k, v (and the sinks as a fourth
input, whose gradient the backward returns), checked against central finite
differences and torch's :func:`gradcheck.torch_ops.attention_with_options`;
each layer entry checks every parameter against finite differences and a torch
composition of the same steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import numpy_attention as na

from . import torch_ops
from .suite import Entry, Target, normal
from .targets import MODERN_IMPLS, options_target


def torch_layer(params: dict, x: Any, *, module: na.CausalSelfAttention, positions: np.ndarray | None) -> Any:
    """CausalSelfAttention from torch: linear, per-head rms_norm, RoPE, the options' attention, linear."""
    batch, length = (x.shape[0], x.shape[1]) if x.dim() == 3 else (1, x.shape[0])
    heads = []
    for name, count in (("q", module.num_heads), ("k", module.num_kv_heads), ("v", module.num_kv_heads)):
        weight, bias = params[f"{name}_proj.weight"], params.get(f"{name}_proj.bias")
        y = torch_ops.linear(x.reshape(batch, length, -1), weight, bias)
        y = y.reshape(batch, length, count, module.head_dim).transpose(1, 2)
        if name != "v" and module.qk_norm:
            y = torch_ops.rms_norm(y, params[f"{name}_norm.weight"], na.modern.QK_NORM_EPS)
        if name != "v" and module.rope:
            y = torch_ops.rope(y, positions, module.rope_base, module.interleaved)
        heads.append(y)
    out = torch_ops.attention_with_options(*heads, params.get("sinks"), is_causal=True, softcap=module.softcap,
                                           window=module.window)
    out = torch_ops.linear(out.transpose(1, 2).reshape(batch, length, -1), params["o_proj.weight"],
                           params.get("o_proj.bias"))
    return out if x.dim() == 3 else out[0]


def layer_target(dtype: np.dtype, *, shape: tuple = (2, 5, 16), num_heads: int = 4, positions: bool = False,
                 training: bool = False, directional: bool = False, **options: Any) -> Target:
    """CausalSelfAttention on seeded x with random gains, sinks and biases (none at its initial 1 or 0)."""
    module = na.CausalSelfAttention(shape[-1], num_heads, **options, dtype=dtype, rng=np.random.default_rng(32))
    module.train(training)
    rng = np.random.default_rng(33)
    for name, value in module.params.items():
        if name.endswith("norm.weight"):
            value[...] = 1 + 0.3 * rng.standard_normal(value.shape)
        elif name == "sinks" or name.endswith("bias"):
            value[...] = rng.standard_normal(value.shape)
    (x,) = normal(dtype, shape, seed=34)
    pos = 3000 + np.random.default_rng(35).permutation(shape[-2]) if positions else None
    kwargs = {"positions": pos}
    reference = None if training and module.dropout else (
        lambda params, x: torch_layer(params, x, module=module, positions=pos))
    return Target((x,), module=module, forward_kwargs=kwargs, torch_forward=reference,
                  fast=directional or sum(v.size for v in module.params.values()) > 4000)


def option_entries(impl: str) -> list[Entry]:
    B, H = 2, 4
    QKV = ((B, H, 5, 4), (B, H, 5, 4), (B, H, 5, 3))  # L = S
    GQA_LS = ((B, H, 3, 4), (1, 2, 6, 4), (1, 2, 6, 3))  # 4 query heads on 2 k/v heads, L != S, broadcast batch

    def entry(name: str, shapes: tuple, **options: Any) -> Entry:
        return Entry(f"modern/attention/{name}/{impl}", lambda dt: options_target(dt, *shapes, impl=impl, **options))

    return [
        entry("softcap", QKV, softcap=1.5, magnitude=4.0),
        entry("softcap-causal", QKV, softcap=2.0, magnitude=4.0, is_causal=True),
        entry("alibi", QKV, alibi=True),
        entry("causal-offset", GQA_LS, is_causal=True, query_offset=1),  # the offset alone moves the diagonal
        entry("alibi-causal-offset", GQA_LS, alibi=True, is_causal=True, query_offset=3),
        entry("window", QKV, window=(1, 2)),
        entry("window-causal", QKV, window=(2, None), is_causal=True),
        entry("window-bool-mask", GQA_LS, window=(None, 1), mask="bool"),
        entry("sinks", QKV, sinks=True),
        entry("sinks-causal-window", QKV, sinks=True, is_causal=True, window=(1, 0)),
        entry("sinks-empty-rows", GQA_LS, sinks=True, window=(0, 0), query_offset=-2),  # queries 0, 1 see no key
        entry("window-empty-rows", GQA_LS, window=(0, 0), query_offset=-2),
        entry("kv-cache-offset", ((1, H, 2, 4), (1, 2, 7, 4), (1, 2, 7, 3)), is_causal=True, window=(3, 0),
              query_offset=5, sinks=True),
        entry("everything-gqa", GQA_LS, softcap=2.0, magnitude=3.0, alibi=True, is_causal=True, window=(2, 0),
              query_offset=3, sinks=True, scale=0.4),
        entry("everything-float-mask", QKV, softcap=1.0, alibi=True, mask="float", window=(3, 1), sinks=True),
        # a mask with no band (no is_causal, no window): the kernels add it on the options' own path
        entry("softcap-bool-mask", QKV, softcap=1.5, magnitude=4.0, mask="bool"),
        entry("alibi-sinks-float-mask", GQA_LS, alibi=True, sinks=True, mask="float"),
    ]


def layer_entries(impl: str) -> list[Entry]:
    # The layer on the textbook pair takes every element; on the others, whose pairs the option entries
    # check element by element, random directions.
    directional = impl != "textbook"

    def entry(name: str, **options: Any) -> Entry:
        return Entry(f"modern/CausalSelfAttention/{name}/{impl}",
                     lambda dt: layer_target(dt, impl=impl, directional=directional, **options))

    return [
        entry("mha-rope"),
        entry("gqa-qk-norm-interleaved", num_kv_heads=2, qk_norm=True, interleaved=True),
        entry("mqa-window-softcap-bias", num_kv_heads=1, window=(2, 0), softcap=3.0, bias=True),
        entry("sinks-positions", num_kv_heads=2, sinks=True, positions=True, rope_base=500.0),
        entry("no-rope-sinks-window", rope=False, sinks=True, window=(1, 1)),
        entry("everything", num_kv_heads=2, qk_norm=True, window=(3, 0), softcap=2.0, sinks=True, bias=True,
              positions=True),
        entry("unbatched-gqa-sinks", shape=(6, 16), num_kv_heads=2, sinks=True, qk_norm=True),
        entry("dropout-train", num_kv_heads=2, sinks=True, dropout=0.3, training=True),
    ]


MODERN_ENTRIES: list[Entry] = [entry for impl in MODERN_IMPLS for entry in option_entries(impl) + layer_entries(impl)]

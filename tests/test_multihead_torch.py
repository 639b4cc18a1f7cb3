"""MultiHeadAttention against PyTorch in float64: outputs, weights and every gradient to 1e-10.

References:
- ``torch.nn.MultiheadAttention`` itself (weights copied with ``to_torch``) when
  ``num_kv_heads == num_heads``; with dropout, torch's ``F.dropout`` is replaced
  for the call by one that applies our mask, so torch's own code runs around it;
- for grouped-query configurations, which torch's module lacks, a reference
  built from torch ops: ``F.linear``, ``scaled_dot_product_attention(enable_gqa=True)``
  (or, with dropout, softmax with our mask over ``repeat_interleave``d heads).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from helpers.multihead_cases import EXACT_ZEROS, MHACase, gradient_errors, random_case
from helpers.numerics import require_torch

from numpy_attention import MultiHeadAttention
from numpy_attention.multihead.torch_interop import torch_state

GRID_SIZE = 240
TOLERANCE = 1e-10
ZERO = 1e-12  # inputs, parameters and dout are O(1): a gradient below this is 0 plus rounding


def torch_inputs(torch, case: MHACase, inputs, kwargs):
    tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
    call = tensors * 3 if case.self_attention else tensors
    masks = {k: torch.tensor(kwargs[k]) for k in ("key_padding_mask", "attn_mask") if k in kwargs}
    return tensors, call, masks


def additive_mask(torch, case: MHACase, masks, dtype):
    """torch MultiheadAttention's mask merging, in torch ops: (N, H, L, S') float, or None."""
    heads, batch = case.module["num_heads"], case.batch or 1
    merged = None
    for name, mask in masks.items():
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))
        mask = torch.nn.functional.pad(mask, (0, case.appended))
        if name == "key_padding_mask":
            mask = mask.reshape(batch, 1, 1, -1)
        elif mask.dim() == 3:
            mask = mask.reshape(batch, heads, case.queries, -1)
        merged = mask if merged is None else merged + mask
    return merged


def torch_ops_reference(torch, case: MHACase, module: MultiHeadAttention, call, masks, keep):
    """Grouped-query multi-head attention from torch ops; returns (out, weights, params)."""
    F = torch.nn.functional
    params = {k: torch.tensor(v, requires_grad=True) for k, v in module.params.items()}
    batch_first = module.batch_first or case.batch is None
    x = [t.unsqueeze(0) if case.batch is None else t if batch_first else t.transpose(0, 1) for t in call]
    q, k, v = (F.linear(t, params[f"{p}_proj.weight"], params.get(f"{p}_proj.bias")) for t, p in zip(x, "qkv"))
    if module.add_bias_kv:
        k = torch.cat([k, params["bias_k"].expand(k.shape[0], 1, -1)], dim=1)
        v = torch.cat([v, params["bias_v"].expand(v.shape[0], 1, -1)], dim=1)
    if module.add_zero_attn:
        k = torch.cat([k, torch.zeros_like(k[:, :1])], dim=1)
        v = torch.cat([v, torch.zeros_like(v[:, :1])], dim=1)
    heads, kv_heads, head_dim = module.num_heads, module.num_kv_heads, module.head_dim
    q = q.unflatten(-1, (heads, head_dim)).transpose(1, 2)
    k, v = (t.unflatten(-1, (kv_heads, head_dim)).transpose(1, 2) for t in (k, v))
    mask = additive_mask(torch, case, masks, q.dtype)
    if case.is_causal and "attn_mask" not in masks:
        causal = torch.ones(case.queries, k.shape[2], dtype=torch.bool).triu(1)
        causal[:, case.keys:] = False  # appended keys stay attendable
        causal = torch.zeros(causal.shape, dtype=q.dtype).masked_fill(causal, float("-inf"))
        mask = causal if mask is None else mask + causal
    k_rep, v_rep = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
    weights = torch.softmax(q @ k_rep.transpose(-1, -2) / head_dim**0.5 + (0 if mask is None else mask), dim=-1)
    if keep is None:
        heads_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    else:
        weights = weights * torch.tensor(keep) / (1 - module.dropout)
        heads_out = weights @ v_rep
    out = F.linear(heads_out.transpose(1, 2).flatten(2), params["out_proj.weight"], params.get("out_proj.bias"))
    out = out[0] if case.batch is None else out if batch_first else out.transpose(0, 1)
    if case.average_attn_weights:
        weights = weights.mean(dim=1)
    weights = weights[0] if case.batch is None else weights
    return out, weights, params


def run_case(torch, case: MHACase) -> dict[str, float]:
    """Relative errors of one configuration, keyed by quantity."""
    module, inputs, kwargs, dout = case.build()
    out, weights = module(*inputs, **kwargs)
    grads = module.backward(dout)
    grads = (grads,) if case.self_attention else grads
    keep = module._cache.attention.dropout_mask
    tensors, call, masks = torch_inputs(torch, case, inputs, kwargs)

    if module.num_kv_heads != module.num_heads:
        out_t, weights_t, params_t = torch_ops_reference(torch, case, module, call, masks, keep)
        out_t.backward(torch.tensor(dout))
        param_grads = {name: p.grad.numpy() for name, p in params_t.items()}
    else:
        reference = module.to_torch()
        appended_hidden = case.is_causal and not case.key_padding_mask and case.appended
        need_weights = case.need_weights or keep is not None or appended_hidden
        if case.is_causal and "attn_mask" not in masks:  # torch insists on the mask with is_causal
            causal = torch.ones(case.queries, case.keys, dtype=torch.bool).triu(1)
            kind = masks.get("key_padding_mask", causal).dtype
            masks["attn_mask"] = causal if kind == torch.bool else torch.zeros(causal.shape).masked_fill(
                causal, float("-inf")).to(kind)

        def dropout_with_our_mask(x, p=0.5, training=True, inplace=False):
            return x * torch.tensor(keep).reshape(x.shape) / (1 - p)

        with mock.patch.object(torch.nn.functional, "dropout", dropout_with_our_mask):
            out_t, weights_t = reference(
                *call, **masks, need_weights=need_weights,
                average_attn_weights=case.average_attn_weights, is_causal=case.is_causal and not appended_hidden,
            )
        out_t.backward(torch.tensor(dout))
        param_grads = torch_state(reference, grads=True)

    pairs = {"output": (out, out_t)}
    if case.need_weights:
        pairs["weights"] = (weights, weights_t)
    return torch_errors(pairs, grads, tensors, module, param_grads)


def torch_errors(pairs: dict, grads, tensors, module: MultiHeadAttention, param_grads: dict) -> dict[str, float]:
    """Errors of the outputs in ``pairs`` (ours, torch tensor), the input and the parameter gradients."""
    pairs = {name: (ours, theirs.detach().numpy()) for name, (ours, theirs) in pairs.items()}
    pairs.update(zip(("dquery", "dkey", "dvalue"), zip(grads, (t.grad.numpy() for t in tensors))))
    assert set(param_grads) == set(module.grads)
    pairs.update((name, (grad, param_grads[name])) for name, grad in module.grads.items())
    return gradient_errors(pairs, ZERO)


def grid_errors(size: int = GRID_SIZE) -> tuple[dict[str, float], list[str]]:
    """The worst relative error per quantity over the grid, and the failing configurations."""
    torch = require_torch()
    worst: dict[str, float] = {}
    failures = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: worker threads only wait on each other
    try:
        errors_per_case = [(case, run_case(torch, case)) for case in map(random_case, range(size))]
    finally:
        torch.set_num_threads(threads)
    for case, errors in errors_per_case:
        for name, error in errors.items():
            worst[name] = max(worst.get(name, 0.0), error)
        bad = {k: e for k, e in errors.items() if not e < (ZERO if k == EXACT_ZEROS else TOLERANCE)}
        if bad:
            failures.append(f"{case}: {bad}")
    return worst, failures


def test_grid_covers_every_option():
    cases = [random_case(i) for i in range(GRID_SIZE)]
    flags = {
        "gqa": [c.module["num_kv_heads"] < c.module["num_heads"] for c in cases],
        "mqa": [c.module["num_kv_heads"] == 1 < c.module["num_heads"] for c in cases],
        "dropout": [c.module["dropout"] > 0 and c.training for c in cases],
        "dropout-eval": [c.module["dropout"] > 0 and not c.training for c in cases],
        "no-bias": [not c.module["bias"] for c in cases],
        "bias_kv": [c.module["add_bias_kv"] for c in cases],
        "zero_attn": [c.module["add_zero_attn"] for c in cases],
        "kdim": [c.module["kdim"] is not None for c in cases],
        "vdim": [c.module["vdim"] is not None for c in cases],
        "seq-first": [not c.module["batch_first"] for c in cases],
        "unbatched": [c.batch is None for c in cases],
        "self": [c.self_attention for c in cases],
        "L!=S": [c.queries != c.keys for c in cases],
        "kpm-bool": [c.key_padding_mask and c.mask_kind == "bool" for c in cases],
        "kpm-float": [c.key_padding_mask and c.mask_kind == "float" for c in cases],
        "mask-2d": [c.attn_mask == "2d" and not c.is_causal for c in cases],
        "mask-3d": [c.attn_mask == "3d" for c in cases],
        "both-masks": [c.attn_mask is not None and c.key_padding_mask for c in cases],
        "causal-alone": [c.is_causal and c.attn_mask is None for c in cases],
        "causal-with-mask": [c.is_causal and c.attn_mask == "2d" for c in cases],
        "no-weights": [not c.need_weights for c in cases],
        "per-head-weights": [c.need_weights and not c.average_attn_weights for c in cases],
        "gqa-dropout": [c.module["num_kv_heads"] < c.module["num_heads"] and c.module["dropout"] > 0
                        and c.training for c in cases],
    }
    for name, hits in flags.items():
        assert sum(hits) >= 5, f"the grid has only {sum(hits)} configurations with {name}"


def test_parity_with_torch_over_the_grid():
    worst, failures = grid_errors()
    assert not failures, f"{len(failures)} of {GRID_SIZE} configurations differ from torch:\n" + "\n".join(
        failures[:5])
    assert {"output", "weights", "dquery", "dkey", "dvalue", "bias_k", "q_proj.bias"} <= set(worst)


def test_from_torch_and_to_torch_round_trip():
    torch = require_torch()
    torch.manual_seed(0)
    for options in ({}, {"kdim": 3, "vdim": 5, "add_bias_kv": True}, {"bias": False, "add_zero_attn": True}):
        reference = torch.nn.MultiheadAttention(6, 2, dropout=0.2, batch_first=False, dtype=torch.float64, **options)
        reference.eval()
        module = MultiHeadAttention.from_torch(reference)
        assert (module.embed_dim, module.num_heads, module.dropout, module.batch_first) == (6, 2, 0.2, False)
        assert not module.training
        expected = torch_state(reference)
        assert set(module.params) == set(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(module.params[name], value)
        back = module.to_torch()
        assert not back.training and back.batch_first is False
        for name, value in torch_state(back).items():
            np.testing.assert_array_equal(value, expected[name])
    float32 = MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(4, 2))
    assert float32.dtype == np.float32 and float32.params["q_proj.weight"].dtype == np.float32


def test_torch_interop_rejects_what_it_cannot_represent():
    torch = require_torch()
    with pytest.raises(TypeError, match=r"torch_module must be a torch.nn.MultiheadAttention; got Linear"):
        MultiHeadAttention.from_torch(torch.nn.Linear(4, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(4, 2, dtype=torch.float16))
    with pytest.raises(ValueError, match="num_kv_heads=1, num_heads=2"):
        MultiHeadAttention(4, 2, num_kv_heads=1).to_torch()


def test_init_draws_from_torch_distributions():
    torch = require_torch()
    torch.manual_seed(0)
    for options in ({}, {"kdim": 16, "vdim": 48}):
        ours = MultiHeadAttention(64, 4, add_bias_kv=True, rng=0, **options)
        theirs = torch_state(torch.nn.MultiheadAttention(64, 4, add_bias_kv=True, dtype=torch.float64, **options))
        for name, value in theirs.items():
            mine = ours.params[name]
            if not value.any():
                assert not mine.any(), name  # zero biases
            elif name.startswith("bias_"):  # normal: compare spreads
                assert abs(mine.std() / value.std() - 1) < 0.35, name
            else:  # uniform: the largest draw sits just below the bound
                assert abs(np.abs(mine).max() / np.abs(value).max() - 1) < 0.02, name


def test_fully_masked_rows_match_torchs_sdpa_path():
    """Rows with no visible key: torch's need_weights=False path (SDPA) gives what we give, out_proj.bias."""
    torch = require_torch()
    case = MHACase({"embed_dim": 6, "num_heads": 3, "add_zero_attn": False}, batch=2, queries=3, keys=4,
                   key_padding_mask=True, attn_mask="2d")
    module, inputs, kwargs, dout = case.build()
    kwargs["key_padding_mask"][1] = True  # batch entry 1 sees no key
    kwargs["attn_mask"][0] = True  # query 0 sees no key
    out, _ = module(*inputs, **kwargs)
    np.testing.assert_array_equal(out[1], np.broadcast_to(module.params["out_proj.bias"], (3, 6)))
    grads = module.backward(dout)
    reference = module.to_torch()
    tensors, call, masks = torch_inputs(torch, case, inputs, kwargs)
    out_t, _ = reference(*call, **masks, need_weights=False)
    out_t.backward(torch.tensor(dout))
    errors = torch_errors({"output": (out, out_t)}, grads, tensors, module, torch_state(reference, grads=True))
    assert all(e < (ZERO if k == EXACT_ZEROS else TOLERANCE) for k, e in errors.items()), errors

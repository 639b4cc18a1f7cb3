"""The weights tier: the attention weights the modules return, against torch, and recycled memory.

The backward never reads the returned weights, so neither finite differences nor a
comparison of outputs and gradients can see them. Here:

* ``MultiHeadAttention``'s weights (averaged and per head; with masks, causal,
  grouped-query heads, appended keys, and dropout, torch being handed our mask)
  against torch's ``multi_head_attention_forward`` (or, for grouped-query heads, the
  plain-torch :func:`gradcheck.torch_ops.grouped_query_attention`);
* ``ScaledDotProductAttention``'s weights (the probabilities before dropout) against
  ``softmax(scale q k^T + mask)`` in torch; None for the tiled implementations;
* the dense kernel's causal weights beyond each tile's last key, exactly 0 when the
  (L, T) buffer is recycled memory that held another call's weights (no torch needed).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

import numpy_attention as na
from numpy_attention.attention_impls import ATTENTION_IMPLS
from numpy_attention.kernels import buffers
from numpy_attention.kernels.schedule import tile_limits

from ..reference import REFERENCE_TOLERANCES, require_torch
from ..report import Report, compare, failed
from ..targets import Entry, Target, make_mask, mha_target, normal
from .common import TierTarget, as_tier

TORCH_ONLY = "weights tier: the returned weights against torch"


def weights_report(title: str, rows: list, method: str, dtype: Any = np.float64) -> Report:
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(dtype)]
    return Report(title=title, rows=rows, method=method, dtype=str(np.dtype(dtype)), atol=atol, rtol=rtol,
                  labels=("numpy", "torch"))


def torch_method() -> str:
    return f"torch {require_torch().__version__}, float64"


def mha_weights_check(target: Target, average: bool) -> Report:
    """The module's returned weights against the torch reference's, same parameters, inputs and dropout mask."""
    torch = require_torch()
    module = target.module
    state = module.rng.bit_generator.state
    _, weights = module(*target.inputs, **{**target.forward_kwargs, "average_attn_weights": average})
    module.rng.bit_generator.state = state
    params = {name: torch.tensor(value, dtype=torch.float64) for name, value in module.params.items()}
    inputs = [torch.tensor(x, dtype=torch.float64) for x in target.inputs]
    expected = target.torch_forward(params, *inputs, return_weights=True, average_attn_weights=average)
    row = compare("weights", weights, expected.detach().numpy(), *REFERENCE_TOLERANCES[weights.dtype])
    return weights_report(f"MultiHeadAttention weights ({'averaged' if average else 'per head'})", [row],
                          torch_method(), weights.dtype)


def mha_weights_entry(name: str, average: bool = True, **options: Any) -> Entry:
    def build(dtype: np.dtype) -> Target:
        target = mha_target(dtype, need_weights=True, **options)
        target.skip_finite_differences = TORCH_ONLY
        return as_tier(target, own_torch=lambda: mha_weights_check(target, average),
                       context=functools.partial(tile_limits, rows=2))

    return Entry(f"weights/MultiHeadAttention/{name}", build)


def sdpa_weights_check(module: Any, q: np.ndarray, k: np.ndarray, v: np.ndarray, kwargs: dict) -> Report:
    """The SDPA module's weights: torch's softmax(scale q k^T + mask) (GQA heads repeated); None if tiled."""
    torch = require_torch()
    _, weights = module(q, k, v, **kwargs)
    if module.impl in ("flash", "textbook-flash"):
        row = compare("weights is None", np.array(weights is None, float), np.array(1.0), 0.5, 0.0)
        return weights_report("ScaledDotProductAttention weights (tiled: None)", [row], "the contract")
    tq, tk = torch.tensor(q), torch.tensor(k).repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scale = module.scale if module.scale is not None else 1 / math.sqrt(q.shape[-1])
    scores = scale * tq @ tk.transpose(-1, -2)
    mask = kwargs.get("attn_mask")
    if kwargs.get("is_causal"):
        mask = np.tri(q.shape[-2], k.shape[-2], dtype=bool)
    if mask is not None:
        scores = scores.masked_fill(~torch.as_tensor(mask), -torch.inf)
    expected = torch.softmax(scores, dim=-1).numpy()
    if weights is None:
        return weights_report("ScaledDotProductAttention weights", [failed("weights", expected.shape, "None")],
                              torch_method())
    row = compare("weights", weights, expected, *REFERENCE_TOLERANCES[np.dtype(np.float64)])
    return weights_report("ScaledDotProductAttention weights", [row], torch_method())


def sdpa_weights_entry(impl: str, name: str, shapes: tuple, *, dropout: float = 0.0, mask: str | None = None,
                       is_causal: bool = False) -> Entry:
    def build(dtype: np.dtype) -> Target:
        q, k, v = normal(np.float64, *shapes, seed=50)
        module = na.ScaledDotProductAttention(dropout, impl=impl, rng=np.random.default_rng(51))
        kwargs = dict(attn_mask=make_mask(mask, (q.shape[-2], k.shape[-2])), is_causal=is_causal)
        return TierTarget((q, k, v), module=module, forward_kwargs=kwargs, torch_forward=sdpa_weights_check,
                          skip_finite_differences=TORCH_ONLY, context=functools.partial(tile_limits, rows=2),
                          own_torch=lambda: sdpa_weights_check(module, q, k, v, kwargs))

    return Entry(f"weights/ScaledDotProductAttention/{impl}-{name}", build)


# --- causal weights in recycled memory -------------------------------------------------------------

EXACTLY_ZERO = np.finfo(np.float64).tiny  # the tolerance of "exactly 0": no normal float64 passes


def recycled_causal_check(impl: str) -> Report:
    """A non-causal call leaves its weights in the pool; the causal call of the same shape gets that memory.

    Its weights above the diagonal (beyond each causal tile's last key) must be exactly 0,
    and all of them those of the textbook pair.
    """
    forward = ATTENTION_IMPLS[impl][0]
    # (1, 2, 256, 256) float64 weights, 1 MiB: served from recycled memory (buffers.MIN_BYTES)
    q, k, v = normal(np.float64, (1, 2, 256, 8), (1, 2, 256, 8), (1, 2, 256, 4), seed=52)
    forward(q * 3, k, v)  # weights with no zeros, then free: their buffer goes back to the pool
    _, cache = forward(q, k, v, is_causal=True)
    above = ~np.tri(256, 256, dtype=bool)
    _, expected = ATTENTION_IMPLS["textbook"][0](q, k, v, is_causal=True)
    beyond = cache.weights[..., above]
    rows = [compare("weights above the diagonal", beyond, np.zeros_like(beyond), EXACTLY_ZERO, 0.0),
            compare("weights", cache.weights, expected.weights, 1e-14, 1e-12)]
    note = f"the causal call's weights in recycled memory: {buffers.MAX_IDLE_BYTES > 0}"
    return Report(title=f"causal weights in recycled memory ({impl})", rows=rows, method="exact zeros",
                  dtype="float64", atol=EXACTLY_ZERO, rtol=0.0, labels=("numpy", "zero / textbook"), notes=[note])


def recycled_entry(impl: str) -> Entry:
    return Entry(f"weights/{impl}-causal-recycled-memory", lambda dt: TierTarget(
        (), own_check=lambda fast: recycled_causal_check(impl)))


SQUARE = ((1, 2, 7, 3), (1, 2, 7, 3), (1, 2, 7, 2))
GQA = ((2, 4, 5, 3), (2, 2, 6, 3), (2, 2, 6, 2))
ENTRIES: list[Entry] = [
    mha_weights_entry("averaged", keys=4),
    mha_weights_entry("per-head", average=False, keys=4),
    mha_weights_entry("causal-per-head", average=False, queries=7, is_causal=True),
    mha_weights_entry("bool-masks-bias-kv-zero-attn", keys=4, masks="bool", add_bias_kv=True, add_zero_attn=True),
    mha_weights_entry("float-masks-per-head-seq-first", average=False, keys=4, masks="float", batch_first=False),
    mha_weights_entry("dropout-per-head", average=False, keys=5, dropout=0.3, training=True),
    mha_weights_entry("dropout-averaged-causal", queries=6, is_causal=True, dropout=0.3, training=True),
    mha_weights_entry("gqa-masks-per-head", average=False, keys=4, masks="bool", num_heads=4, num_kv_heads=2),
    mha_weights_entry("unbatched-float-masks", batch=None, keys=4, masks="float"),
    mha_weights_entry("textbook-causal", queries=7, is_causal=True, impl="textbook"),
    mha_weights_entry("flash-per-head-dropout", average=False, keys=5, dropout=0.3, training=True, impl="flash"),
]
for _impl in ("dense", "flash", "textbook", "textbook-flash"):
    ENTRIES += [
        sdpa_weights_entry(_impl, "causal-L=T", SQUARE, is_causal=True),
        sdpa_weights_entry(_impl, "gqa-bool-mask-dropout", GQA, mask="bool", dropout=0.3),
    ]
ENTRIES += [recycled_entry("dense"), recycled_entry("textbook")]

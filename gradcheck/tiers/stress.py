"""The stress tier (torch only): large scores and logits, large and infinite mask entries, NaN placement.

Finite differences cannot judge these inputs (a saturated softmax, NaN outputs), and
standard-normal data never reaches the code they exercise: the softmax's max shift,
the kernels' bounded fast paths (the shift skipped when Cauchy-Schwarz bounds the
scores), the online softmax's rescaling, the rows with no visible key, the skipped
causal tiles when an input is not finite. Each entry compares the output and every
gradient with torch autograd (SDPA on its MATH backend) element by element, and
requires NaN and inf exactly where torch has them (:func:`.common.compare_nan_aware`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from numpy_attention import functional as F
from numpy_attention.kernels.schedule import tile_limits

from .. import torch_ops
from ..targets import Entry, Target, attention_pair, mha_target, normal, scores_shape
from .common import as_tier, torch_module_run, torch_pair_run

TORCH_ONLY = "torch-only tier: compared with torch, NaN placement included"
FLOAT64_ONLY = "float64 only: float32 rounds scores of 1e5 by ~0.01, which moves a saturated softmax"


def large_mask(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Standard-normal entries, a tenth +800 and a tenth -1e4; key 0 keeps a normal entry."""
    mask = rng.standard_normal(shape)
    draw = rng.random(shape)
    mask[draw < 0.1] = 800.0
    mask[draw > 0.9] = -1e4
    mask[..., 0] = 0.5
    return mask


def infinite_mask(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """A fifth -inf, row 1 all -inf (no visible key), one +inf in row 2 (a NaN row in torch)."""
    mask = rng.standard_normal(shape)
    mask[rng.random(shape) < 0.2] = -np.inf
    mask[..., 0, 0] = 0.0
    mask[..., 1, :] = -np.inf
    mask[..., 2, 1] = np.inf
    return mask


def empty_rows_mask(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Boolean (True = may attend): rows 0 and 3 see no key at all, the others most keys."""
    mask = rng.random(shape) > 0.3
    mask[..., 0, :] = False
    mask[..., 3, :] = False
    mask[..., 1:3, 0] = True
    return mask


MASKS: dict[str, Callable] = {"large": large_mask, "inf": infinite_mask, "empty-rows": empty_rows_mask}


def put_nan(array: np.ndarray, index: tuple) -> np.ndarray:
    array = array.copy()
    array[index] = np.nan
    return array


def stress_attention_target(
    dtype: np.dtype, impl: str, shapes: tuple, *, times: float = 1.0, mask: str | None = None,
    is_causal: bool = False, nan: str | None = None, nan_at: tuple = (0, 0, 1, 1), block: Any = (2, 3),
) -> Target:
    """The pair ``impl`` with q, k scaled by ``times``, a stress mask, a NaN in ``nan`` (q, k, v, mask or dout)."""
    q, k, v = normal(dtype, *shapes, seed=30)
    q, k = (q * times).astype(dtype), (k * times).astype(dtype)
    attn_mask = None if mask is None else MASKS[mask](scores_shape(q, k), np.random.default_rng(31))
    if attn_mask is not None and attn_mask.dtype != np.bool_:
        attn_mask = attn_mask.astype(dtype)
    if nan in ("q", "k", "v"):
        q, k, v = (put_nan(x, nan_at) if name == nan else x for name, x in zip("qkv", (q, k, v)))
    if nan == "mask":
        attn_mask = put_nan(attn_mask, nan_at)
    pair_forward, backward = attention_pair(impl, block)
    options = dict(attn_mask=attn_mask, is_causal=is_causal)
    target = Target((q, k, v), functools.partial(pair_forward, **options), backward,
                    torch_forward=functools.partial(torch_ops.attention, **options), skip_finite_differences=TORCH_ONLY)
    dout = functools.partial(put_nan, index=nan_at) if nan == "dout" else None
    if times > 100 and np.dtype(dtype) == np.float32:
        target.torch_forward, target.skip_finite_differences = None, FLOAT64_ONLY
    return as_tier(target, own_torch=lambda: torch_pair_run(target, dout), context=functools.partial(
        tile_limits, rows=2))


def stress_entry(name: str, impl: str, shapes: tuple, **options: Any) -> Entry:
    return Entry(f"stress/{impl}/{name}", lambda dt: stress_attention_target(dt, impl, shapes, **options))


QKV = ((1, 2, 5, 3), (1, 2, 6, 3), (1, 2, 6, 2))  # L = 5 queries, T = 6 keys
GQA = ((1, 4, 5, 3), (1, 2, 6, 3), (1, 2, 6, 2))
SQUARE = ((1, 2, 6, 3), (1, 2, 6, 3), (1, 2, 6, 2))


def stress_entries(impl: str) -> list[Entry]:
    """Large values, then NaN placement, for one implementation (flash pairs in 2 x 3 blocks, dense in 2-row tiles)."""
    return [
        stress_entry("scores-x40", impl, QKV, times=40.0),
        stress_entry("scores-x1e3", impl, GQA, times=1e3),
        stress_entry("bool-mask-scores-x40", impl, QKV, times=40.0, mask="empty-rows"),
        stress_entry("causal-scores-x40", impl, SQUARE, times=40.0, is_causal=True),
        stress_entry("float-mask-800-1e4", impl, GQA, mask="large"),
        stress_entry("float-mask-800-scores-x40", impl, QKV, times=40.0, mask="large"),
        stress_entry("float-mask-inf", impl, QKV, mask="inf"),
        stress_entry("all-neg-inf-rows", impl, GQA, mask="empty-rows"),
        stress_entry("nan-in-q", impl, GQA, nan="q"),
        stress_entry("nan-in-k", impl, GQA, nan="k"),
        stress_entry("nan-in-v", impl, QKV, nan="v"),
        stress_entry("nan-in-v-empty-rows", impl, QKV, nan="v", mask="empty-rows", nan_at=(0, 1, 4, 0)),
        stress_entry("nan-in-dout", impl, QKV, nan="dout"),
        stress_entry("nan-in-float-mask", impl, QKV, nan="mask", mask="large"),
        stress_entry("causal-nan-in-dout", impl, SQUARE, nan="dout", is_causal=True, nan_at=(0, 1, 1, 0)),
        stress_entry("causal-nan-in-last-key", impl, SQUARE, nan="k", is_causal=True, nan_at=(0, 0, 5, 1)),
        stress_entry("causal-nan-in-q", impl, SQUARE, nan="q", is_causal=True, nan_at=(0, 1, 2, 0)),
    ]


# --- softmax and cross-entropy at large logits ------------------------------------------------------

def large_logits(dtype: np.dtype, shape: tuple, times: float, seed: int) -> np.ndarray:
    """Seeded logits times ``times``, with one row [1000, 0, ...] and one -inf entry off the targets."""
    (x,) = normal(dtype, shape, seed=seed)
    x = x * times
    x[0, 0], x[0, 1:] = 1000.0, 0.0
    x[1, -1] = -np.inf
    return x.astype(dtype)


def softmax_stress_target(dtype: np.dtype, nan: bool = False) -> Target:
    x = large_logits(dtype, (4, 5), 400.0, seed=32)
    if nan:
        x[2, 3] = np.nan
    target = Target((x,), F.softmax_forward, F.softmax_backward, torch_forward=torch_ops.softmax,
                    skip_finite_differences=TORCH_ONLY)
    return as_tier(target, own_torch=lambda: torch_pair_run(target))


def cross_entropy_stress_target(dtype: np.dtype, reduction: str = "mean") -> Target:
    logits = large_logits(dtype, (4, 6), 400.0, seed=33)
    target_classes = np.array([0, 2, 5, 1])
    forward = functools.partial(F.cross_entropy_forward, reduction=reduction)
    target = Target((logits, target_classes), forward, F.cross_entropy_backward,
                    torch_forward=functools.partial(torch_ops.cross_entropy, reduction=reduction),
                    skip_finite_differences=TORCH_ONLY)
    return as_tier(target, own_torch=lambda: torch_pair_run(target))


# --- MultiHeadAttention: large inputs and masks, NaN placement -----------------------------------------

def mha_stress_target(dtype: np.dtype, *, nan: str | None = None, impl: str = "dense", **options: Any) -> Target:
    """MHA (need_weights=False: torch's SDPA path) with large float mask entries, a NaN in one input if asked.

    ``nan``: "query", "key", "value" (entry (1, 2, 3)), "attn_mask" (one entry of the float mask), or
    "padding" (not a NaN: batch entry 1's keys all padded, rows with no visible key).

    A tenth of each float mask's finite entries become +800 and a tenth -1e4 (key 0 stays allowed):
    some rows saturate, not all, so every gradient keeps a scale of its own (when all rows saturate,
    the projections' gradients vanish to rounding, ~1e-11 against torch's ~1e-259: no measure of a bug).
    """
    target = mha_target(dtype, need_weights=False, impl=impl, **{"batch_first": True, **options})  # (N, L, E)
    inputs = list(target.inputs)
    if nan in ("query", "key", "value"):
        position = {"query": 0, "key": 1, "value": 2}[nan]
        inputs[position] = put_nan(inputs[position], (1, 2, 3))
    target.inputs = tuple(inputs)
    if nan == "padding":
        target.forward_kwargs["key_padding_mask"][1] = True if target.forward_kwargs[
            "key_padding_mask"].dtype == np.bool_ else -np.inf
    target.skip_finite_differences = TORCH_ONLY
    rng = np.random.default_rng(34)
    masks = {}
    for name in ("attn_mask", "key_padding_mask"):
        mask = target.forward_kwargs.get(name)
        if mask is not None and mask.dtype != np.bool_:
            draw = rng.random(mask.shape)
            large = np.where(draw < 0.1, 800.0, np.where(draw > 0.9, -1e4, mask))
            large[..., 0] = mask[..., 0]
            masks[name] = target.forward_kwargs[name] = np.where(np.isfinite(mask), large, mask).astype(mask.dtype)
    if nan == "attn_mask":
        masks["attn_mask"] = target.forward_kwargs["attn_mask"] = put_nan(target.forward_kwargs["attn_mask"], (1, 2, 0))
    if nan == "padding":
        masks["key_padding_mask"] = target.forward_kwargs["key_padding_mask"]
    target.torch_forward = functools.partial(target.torch_forward, **masks)
    return as_tier(target, own_torch=lambda: torch_module_run(target))


def mha_stress_entries(impl: str) -> list[Entry]:
    return [
        Entry(f"stress/MultiHeadAttention/{impl}-float-masks-800-1e4",
              lambda dt: mha_stress_target(dt, keys=4, masks="float", impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-causal-float-masks-800-1e4",
              lambda dt: mha_stress_target(dt, queries=5, is_causal=True, masks="float", impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-nan-in-key",
              lambda dt: mha_stress_target(dt, nan="key", keys=4, impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-nan-in-query-bool-masks",
              lambda dt: mha_stress_target(dt, nan="query", keys=4, masks="bool", impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-nan-in-value-causal",
              lambda dt: mha_stress_target(dt, nan="value", keys=4, is_causal=True, impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-nan-in-float-attn-mask",
              lambda dt: mha_stress_target(dt, nan="attn_mask", keys=4, masks="float", impl=impl)),
        Entry(f"stress/MultiHeadAttention/{impl}-all-keys-padded",
              lambda dt: mha_stress_target(dt, nan="padding", keys=4, masks="bool", impl=impl)),
    ]


IMPLS = ("dense", "flash", "textbook", "textbook-flash")
ENTRIES: list[Entry] = [entry for impl in IMPLS for entry in stress_entries(impl)]
ENTRIES += [entry for impl in IMPLS for entry in mha_stress_entries(impl)]
ENTRIES += [
    Entry("stress/softmax/logits-400", softmax_stress_target),
    Entry("stress/softmax/logits-400-nan", lambda dt: softmax_stress_target(dt, nan=True)),
    Entry("stress/cross_entropy/logits-400-mean", cross_entropy_stress_target),
    Entry("stress/cross_entropy/logits-400-none", lambda dt: cross_entropy_stress_target(dt, reduction="none")),
]

"""How far two roundings of one attention computation may differ: the classical rounding-error bound.

A product ``sum_j a_j b_j`` rounded in float32 is off by at most about
``n * eps * sum_j |a_j| |b_j|``, however much the terms cancel. So each
float32 result is compared with float64 element by element, against
``eps * (1 + largest |score|) * (the same computation in absolute values)``:
the ``1 + |score|`` term is how rounding in a score of that size moves the
softmax. A dtype slip (a float16 intermediate, a float64 mask that never got
cast, a float32 accumulation where it matters) breaks this bound by orders
of magnitude; honest rounding stays well inside it. The same bound with
float64's eps says when two float64 computations of one quantity (say, with
the keys in another order) agree up to rounding.
"""

from __future__ import annotations

import numpy as np


def _expand_kv(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(..., Hkv, S, X) -> (..., Hq, S, X), each k/v head repeated for its group (torch's repeat_interleave)."""
    return x if x.ndim == 2 else np.repeat(x, num_heads // x.shape[-3], axis=-3)


def _reduce_like(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a bound over the query heads of each group and over broadcast batch axes, back to ``shape``."""
    if grad.ndim > 2 and len(shape) > 2 and grad.shape[-3] != shape[-3]:
        *batch, heads, rows, cols = grad.shape
        grad = grad.reshape(*batch, shape[-3], heads // shape[-3], rows, cols).sum(-3)
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


def attention_error_scales(q, k, v, dout, weights, scale, attn_mask=None) -> tuple[float, dict[str, np.ndarray]]:
    """(largest |score| bound, absolute-value magnitudes of out, dq, dk, dv), all from float64 data."""
    num_heads = q.shape[-3] if q.ndim > 2 else 1
    q, k, v, dout = (np.abs(np.asarray(x, np.float64)) for x in (q, k, v, dout))
    k_full, v_full, weights = _expand_kv(k, num_heads), _expand_kv(v, num_heads), np.asarray(weights, np.float64)
    score_size = float((abs(scale) * q @ k_full.swapaxes(-1, -2)).max(initial=0.0))
    if attn_mask is not None and attn_mask.dtype != np.bool_:
        score_size += float(np.abs(attn_mask[np.isfinite(attn_mask)]).max(initial=0.0))
    d_weights = dout @ v_full.swapaxes(-1, -2)
    d_scores = weights * (d_weights + (d_weights * weights).sum(-1, keepdims=True))
    magnitudes = {
        "out": weights @ v_full,
        "dq": _reduce_like(abs(scale) * d_scores @ k_full, q.shape),
        "dk": _reduce_like(abs(scale) * d_scores.swapaxes(-1, -2) @ q, k.shape),
        "dv": _reduce_like(weights.swapaxes(-1, -2) @ dout, v.shape),
    }
    return score_size, magnitudes


def assert_within_rounding(name: str, actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray,
                           score_size: float, dtype=np.float32, factor: float = 16.0) -> None:
    """Element-wise: |actual - expected| <= factor * eps(dtype) * (1 + |score|) * magnitude (+ a denormal floor)."""
    shapes = actual.shape, expected.shape, magnitude.shape
    assert shapes[0] == shapes[1] == shapes[2], f"{name}: shapes {shapes}"
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    bound = factor * eps * (1.0 + score_size) * magnitude + tiny
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else ()
    assert np.all(error <= bound), f"{name}: off by {error[worst]:.3g} at {worst}, allowed {bound[worst]:.3g}"


def assert_float32_close(name: str, actual32: np.ndarray, expected64: np.ndarray, magnitude: np.ndarray,
                         score_size: float) -> None:
    """A float32 result agrees with the float64 one to float32 precision."""
    assert actual32.dtype == np.float32, f"{name}: {actual32.dtype}"
    assert_within_rounding(name, actual32, expected64, magnitude, score_size, np.float32)

"""Softmax, forward and backward.

See docs/derivations.md, section "Softmax".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, check_axis, check_cache, check_dout, check_ndim


class SoftmaxCache(NamedTuple):
    """What the softmax backward needs: the output ``y`` and the axis."""

    y: np.ndarray
    axis: int


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``; a row of all ``-inf`` gives all zeros.

    Subtracting the row maximum ``m`` keeps ``exp`` in (0, 1]. A row whose
    entries are all ``-inf`` (every key masked) has no maximum to subtract and
    nothing to normalise: it is defined as 0 rather than NaN, so that fully
    masked attention rows give output 0 and gradient 0. NaN and ``+inf``
    spread to their whole row, as in torch.
    """
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isneginf(m), 0.0, m).astype(x.dtype, copy=False)  # an all -inf row: shift by 0
    # A row holding +inf gives inf - inf = NaN, as in torch; -inf from an overflow becomes exp = 0: no warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - m)
    l = np.sum(e, axis=axis, keepdims=True)
    return np.divide(e, l, out=np.zeros_like(e), where=l != 0)  # l = 0 only in an all -inf row


def softmax_grad(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """``dx = y * (dy - sum(dy * y, axis))``: the softmax backward without its Jacobian."""
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def softmax_forward(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, SoftmaxCache]:
    """Softmax along ``axis``.

    Parameters
    ----------
    x : ndarray, float32 or float64 (integers are converted to float64)
    axis : int

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``; ``y = exp(x - max) / sum(exp(x - max))``
    cache : SoftmaxCache
    """
    x = as_float_array(x, "x")
    check_ndim(x, "x", min_ndim=1)
    axis = check_axis(axis, x.ndim)
    y = softmax(x, axis)
    return y, SoftmaxCache(y=y, axis=axis)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """Gradient of softmax with respect to its input.

    The Jacobian is ``dy_i/dx_j = y_i (delta_ij - y_j)``; contracting it with
    ``dout`` needs no matrix::

        dx = y * (dout - sum(dout * y, axis))

    See docs/derivations.md, section "Softmax".
    """
    check_cache(cache, SoftmaxCache, "softmax_forward")
    dout = check_dout(dout, cache.y.shape, cache.y.dtype)
    return softmax_grad(dout, cache.y, cache.axis)

"""Softmax, forward and backward.

See docs/derivations.md, section "Softmax".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import as_float_array, check_axis, check_cache, check_dout, check_ndim


class SoftmaxCache(NamedTuple):
    """What the softmax backward needs: the output ``y`` and the axis."""

    y: np.ndarray
    axis: int


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of a float array; a row of all ``-inf`` gives all zeros.

    Subtracting the row maximum keeps ``exp`` in (0, 1], so scores of any
    magnitude give no overflow. A row whose entries are all ``-inf`` (every
    key masked) has no maximum to subtract; it is defined as 0 rather than
    NaN, so that fully masked attention rows give output 0 and gradient 0.
    """
    if x.shape[axis] == 0:  # softmax over no entries: nothing to normalise (max has no identity)
        return np.zeros_like(x)
    row_max = x.max(axis=axis, keepdims=True)
    # An all -inf row would give -inf - (-inf) = NaN; shift it by 0 instead.
    row_max[np.isneginf(row_max)] = 0.0
    # x - max may overflow to -inf (x = -1e308, max = 1e308): exp(-inf) = 0 is still the right weight.
    with np.errstate(over="ignore"):
        y = np.exp(x - row_max)
    row_sum = y.sum(axis=axis, keepdims=True)
    # Rows that summed to 0 are fully masked: leave them 0 instead of 0/0.
    np.divide(y, row_sum, out=y, where=row_sum > 0)
    return y


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

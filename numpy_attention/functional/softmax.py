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
    """Numerically stable softmax of a float array along ``axis``; a row of all ``-inf`` gives all zeros.

    Subtracting the row maximum keeps ``exp`` in (0, 1], so scores of any
    magnitude give no overflow. A row whose entries are all ``-inf`` (every
    key masked) has no maximum to subtract; it is defined as 0 rather than
    NaN, so that fully masked attention rows give output 0 and gradient 0.
    The work is :func:`softmax_rows`'s, on a copy with ``axis`` moved last.
    """
    y = x.copy()
    softmax_rows(np.moveaxis(y, axis, -1))
    return y


# Within these bounds on |x|, exp(x) neither overflows nor underflows (to 0 or a subnormal), and a row
# of up to 2^40 such terms sums to a finite number: a softmax over them needs no shift by the row maximum.
EXP_SAFE_BOUND = {np.dtype(np.float32): 60.0, np.dtype(np.float64): 600.0}


def softmax_rows(x: np.ndarray, *, shift: bool = True) -> np.ndarray:
    """Softmax over the last axis, in place in ``x``: the attention's tiles of scores.

    Softmax is unchanged by subtracting any number from a row; the row maximum is
    the usual choice, because it keeps ``exp`` from overflowing. ``shift=False``
    skips that pass (a reduction and a subtraction over every entry): the caller
    vouches that every entry is ``-inf`` or within ``EXP_SAFE_BOUND`` of 0. The
    row sums come from ``einsum``, about 3x faster than NumPy's ``sum`` over a
    short last axis. (A matrix-vector product with ones was a little faster, but
    OpenBLAS's kernel now and then raised the floating-point "invalid" flag on
    finite tiles: a spurious RuntimeWarning.) Rows of all ``-inf`` give 0, as in
    :func:`softmax`.
    """
    if shift and x.shape[-1]:
        row_max = x.max(axis=-1, keepdims=True)
        row_max[np.isneginf(row_max)] = 0.0
        with np.errstate(over="ignore"):
            np.subtract(x, row_max, out=x)
    np.exp(x, out=x)
    row_sum = np.einsum("...j->...", x)[..., None]
    inverse = np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)
    x *= inverse
    return x


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

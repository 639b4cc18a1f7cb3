"""The kernels' softmax: in place over the last axis of a tile, optionally without the max shift.

The textbook :func:`numpy_attention.functional.softmax.softmax` is the spec; this
one computes the same rows in the tile's own memory, in fewer passes.
See docs/performance.md, "The bounded softmax".
"""

from __future__ import annotations

import numpy as np

# Within these bounds on |x|, exp(x) neither overflows nor underflows (to 0 or a subnormal), and a row
# of up to 2^40 such terms sums to a finite number: a softmax over them needs no shift by the row maximum.
EXP_SAFE_BOUND = {np.dtype(np.float32): 60.0, np.dtype(np.float64): 600.0}


def softmax_rows(x: np.ndarray, *, shift: bool = True) -> np.ndarray:
    """Softmax over the last axis, in place in ``x``: the attention's tiles of scores.

    Softmax is unchanged by subtracting any number from a row; the row maximum is
    the usual choice, because it keeps ``exp`` from overflowing. ``shift=False``
    skips that pass: the caller vouches that every entry is ``-inf`` or within
    ``EXP_SAFE_BOUND`` of 0. The row sums come from ``einsum``, faster than
    NumPy's ``sum`` over a short last axis (a matrix-vector product with ones
    would be faster still, but OpenBLAS's kernel now and then raises the
    floating-point "invalid" flag on finite tiles). Rows of all ``-inf`` give 0;
    a row holding NaN or ``+inf`` is all NaN, as in torch.
    """
    if shift and x.shape[-1]:
        row_max = x.max(axis=-1, keepdims=True)
        row_max[np.isneginf(row_max)] = 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(x, row_max, out=x)
    np.exp(x, out=x)
    row_sum = np.einsum("...j->...", x)[..., None]
    # 0 only for a row of all -inf; a NaN sum (a NaN or +inf score) makes its whole row NaN.
    inverse = np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum != 0)
    with np.errstate(invalid="ignore"):
        x *= inverse
    return x

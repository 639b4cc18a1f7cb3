"""The linear kernel: :mod:`numpy_attention.functional.linear`'s pair, its large products split between the cores.

Same arguments, results and cache as the textbook pair; only the products run
through :func:`numpy_attention.kernels.schedule.matmul`, which keeps BLAS on one
thread per core while the attention's heads also run on the cores (see
docs/performance.md, "Products on the cores").
"""

from __future__ import annotations

import math

import numpy as np

from .._args import check_linear_args
from ..functional.linear import LinearCache
from ..validation import check_cache, check_dout
from .schedule import matmul, matmuls


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    """``out = x @ weight.T + bias``, as :func:`numpy_attention.functional.linear_forward`."""
    x, weight, bias = check_linear_args(x, weight, bias)
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): that fails when a feature size is 0
    out = matmul(x.reshape(rows, weight.shape[1]), weight.T).reshape(*x.shape[:-1], weight.shape[0])
    if bias is not None:
        out += bias
    return out, LinearCache(x=x, weight=weight, has_bias=bias is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``out = x W^T + b``, as the textbook ``linear_backward``::

        dx = dout @ W                  (..., in)
        dW = dout^T @ x                (out, in)   summed over every batch row
        db = sum(dout, rows)           (out,)

    See docs/derivations.md, section "Linear layer".
    """
    check_cache(cache, LinearCache, "linear_forward")
    x, weight = cache.x, cache.weight
    dout = check_dout(dout, x.shape[:-1] + (weight.shape[0],), x.dtype)
    rows = math.prod(x.shape[:-1])
    rows_out = dout.reshape(rows, weight.shape[0])
    dx, dweight = matmuls([(rows_out, weight), (rows_out.T, x.reshape(rows, weight.shape[1]))])
    dx = dx.reshape(x.shape)
    dbias = rows_out.sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias

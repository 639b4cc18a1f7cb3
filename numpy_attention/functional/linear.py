"""Linear (affine) layer, forward and backward, with torch's weight layout.

See docs/derivations.md, section "Linear layer".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._args import check_linear_args
from ..validation import check_cache, check_dout


class LinearCache(NamedTuple):
    """What the linear backward needs: the input and the weight (and whether a bias was used)."""

    x: np.ndarray
    weight: np.ndarray
    has_bias: bool


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    """``out = x @ weight.T + bias``, as ``torch.nn.functional.linear``.

    Parameters
    ----------
    x : ndarray (..., in_features)
    weight : ndarray (out_features, in_features)
    bias : ndarray (out_features,) or None

    Returns
    -------
    out : ndarray (..., out_features)
    cache : LinearCache
    """
    x, weight, bias = check_linear_args(x, weight, bias)
    out = x @ weight.T
    if bias is not None:
        out = out + bias
    return out, LinearCache(x=x, weight=weight, has_bias=bias is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``out = x W^T + b``.

    With ``x`` flattened to rows (N, in) and ``dout`` to (N, out)::

        dx = dout @ W                  (..., in)
        dW = dout^T @ x                (out, in)   summed over every batch row
        db = sum(dout, rows)           (out,)

    See docs/derivations.md, section "Linear layer".
    """
    check_cache(cache, LinearCache, "linear_forward")
    x, weight = cache.x, cache.weight
    dout = check_dout(dout, x.shape[:-1] + (weight.shape[0],), x.dtype)
    rows = math.prod(x.shape[:-1])  # every batch row (not reshape(-1, ...): that fails when a size is 0)
    dout_rows, x_rows = dout.reshape(rows, weight.shape[0]), x.reshape(rows, weight.shape[1])
    dx = dout @ weight
    dweight = dout_rows.T @ x_rows
    dbias = dout_rows.sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias

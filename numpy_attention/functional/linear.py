"""Linear (affine) layer, forward and backward, with torch's weight layout.

See docs/derivations.md, section "Linear layer".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._validation import as_float_array, check_cache, check_dout, same_dtype
from .tiles import matmul


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
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    arrays, names = [x, weight], ["x", "weight"]
    if bias is not None:
        bias = as_float_array(bias, "bias")
        arrays.append(bias)
        names.append("bias")
    same_dtype(arrays, names)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features); got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x must have in_features = {weight.shape[1]} in its last dimension "
            f"(weight is {weight.shape}); got x of shape {x.shape}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},); got {bias.shape}")
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): that fails when a feature size is 0
    out = matmul(x.reshape(rows, weight.shape[1]), weight.T).reshape(*x.shape[:-1], weight.shape[0])
    if bias is not None:
        out += bias
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
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): that fails when a feature size is 0
    rows_out = dout.reshape(rows, weight.shape[0])
    dx = matmul(rows_out, weight).reshape(x.shape)
    dweight = matmul(rows_out.T, x.reshape(rows, weight.shape[1]))
    dbias = rows_out.sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias

"""Layer normalization over the last axis, forward and backward, as ``torch.nn.functional.layer_norm``.

See docs/derivations.md, section "Layer normalization".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._args import check_layer_norm_args
from ..validation import check_cache, check_dout


class LayerNormCache(NamedTuple):
    """What the backward needs: the normalized input, 1/sqrt(var + eps) per row, the weight, whether a bias was used."""

    x_hat: np.ndarray
    rstd: np.ndarray
    weight: np.ndarray | None
    has_bias: bool


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None, eps: float = 1e-5
) -> tuple[np.ndarray, LayerNormCache]:
    """Normalize each row of the last axis to zero mean and unit (biased) variance, then scale and shift.

    With D features per row::

        mu    = mean(x)                    (..., 1)
        var   = mean((x - mu)^2)           (..., 1)   biased, as torch
        x_hat = (x - mu) / sqrt(var + eps) (..., D)
        out   = x_hat * weight + bias      (..., D)

    Parameters
    ----------
    x : ndarray (..., D)
    weight, bias : ndarray (D,) or None
    eps : float
        Added to the variance (torch's default 1e-5).

    Returns
    -------
    out : ndarray (..., D)
    cache : LayerNormCache
    """
    x, weight, bias, eps = check_layer_norm_args(x, weight, bias, eps)
    mu = x.mean(axis=-1, keepdims=True)
    x_c = x - mu
    var = (x_c * x_c).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    x_hat = x_c * rstd
    out = x_hat if weight is None else x_hat * weight
    if bias is not None:
        out = out + bias
    out = out.copy() if out is x_hat else out  # the output never shares memory with the cache
    return out, LayerNormCache(x_hat, rstd, weight, bias is not None)


def layer_norm_backward(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of ``out = x_hat * weight + bias`` with ``x_hat = (x - mean) / sqrt(var + eps)``.

    With ``g = dout * weight`` (..., D) and means over the D features of each row::

        dx      = rstd * (g - mean(g) - x_hat * mean(g * x_hat))    (..., D)
        dweight = sum over rows of dout * x_hat                     (D,)
        dbias   = sum over rows of dout                             (D,)

    ``dweight`` (``dbias``) is None when the forward had no weight (bias).

    See docs/derivations.md, section "Layer normalization".
    """
    check_cache(cache, LayerNormCache, "layer_norm_forward")
    x_hat, rstd, weight = cache.x_hat, cache.rstd, cache.weight
    dout = check_dout(dout, x_hat.shape, x_hat.dtype)
    rows = tuple(range(dout.ndim - 1))
    g = dout if weight is None else dout * weight
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))
    dweight = None if weight is None else (dout * x_hat).sum(axis=rows)
    dbias = dout.sum(axis=rows) if cache.has_bias else None
    return dx, dweight, dbias

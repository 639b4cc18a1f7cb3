"""RMSNorm over the last axis, forward and backward, as ``torch.nn.functional.rms_norm``.

See docs/derivations.md, section "RMSNorm and QK-norm".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, check_cache, check_dout, check_real, same_dtype


class RMSNormCache(NamedTuple):
    """What the RMSNorm backward needs: the input, its inverse root mean square per row, the weight."""

    x: np.ndarray
    rstd: np.ndarray
    weight: np.ndarray | None


def rms_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-6
) -> tuple[np.ndarray, RMSNormCache]:
    """``out = x / sqrt(mean(x**2, last axis) + eps) * weight``, as torch's ``rms_norm(x, (D,), weight, eps)``.

    Parameters
    ----------
    x : ndarray (..., D)
    weight : ndarray (D,) or None
        The learnable gain (Llama's RMSNorm has one; ``None`` is a gain of 1).
    eps : float
        Added to the mean square inside the root (non-negative). torch's own
        default, ``eps=None``, means the dtype's machine epsilon; here it is 1e-6.

    Returns
    -------
    out : ndarray (..., D), the dtype of ``x``
    cache : RMSNormCache
    """
    x = as_float_array(x, "x")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must be (..., D) with at least one feature D to normalize over; got shape {x.shape}")
    if weight is not None:
        weight = as_float_array(weight, "weight")
        same_dtype([x, weight], ["x", "weight"])
        if weight.shape != x.shape[-1:]:
            raise ValueError(f"weight must have shape {x.shape[-1:]}, the last axis of x; got {weight.shape}")
    eps = check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be a non-negative real number; got {eps!r}")
    with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero row with eps = 0 gives NaN, as in torch
        rstd = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)  # (..., 1)
        x_hat = x * rstd  # (..., D)
    out = x_hat if weight is None else x_hat * weight
    return out, RMSNormCache(x, rstd, weight)


def rms_norm_backward(dout: np.ndarray, cache: RMSNormCache) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients of RMSNorm with respect to ``x`` and ``weight``.

    With ``r = 1 / sqrt(mean(x**2) + eps)`` per row (..., 1) and ``x_hat = x r``::

        dx_hat = dout * weight                                 (..., D)
        dx = r * (dx_hat - x_hat * mean(dx_hat * x_hat))       (..., D)
        dweight = sum(dout * x_hat, every axis but the last)   (D,)

    ``dweight`` is None when there is no weight.

    See docs/derivations.md, section "RMSNorm and QK-norm".
    """
    check_cache(cache, RMSNormCache, "rms_norm_forward")
    x, rstd, weight = cache
    dout = check_dout(dout, x.shape, x.dtype)
    with np.errstate(invalid="ignore"):
        x_hat = x * rstd
        dx_hat = dout if weight is None else dout * weight
        dx = rstd * (dx_hat - x_hat * np.mean(dx_hat * x_hat, axis=-1, keepdims=True))
    dweight = None if weight is None else (dout * x_hat).reshape(-1, x.shape[-1]).sum(axis=0)
    return dx, dweight

"""The GELU activation, exact (erf) and tanh-approximated, forward and backward, as ``torch.nn.functional.gelu``.

See docs/derivations.md, section "GELU".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, check_cache, check_choice, check_dout
from .erf import normal_cdf

APPROXIMATIONS = ("none", "tanh")
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TANH_BETA = math.sqrt(2.0 / math.pi)
TANH_KAPPA = 0.044715


class GeluCache(NamedTuple):
    """What the backward needs: the input, which form was used, and Phi(x) of the exact form (else None)."""

    x: np.ndarray
    approximate: str
    cdf: np.ndarray | None


def gelu_forward(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, GeluCache]:
    """``gelu(x) = x * Phi(x)``, Phi the standard normal CDF; or its tanh approximation.

    ::

        approximate="none":  out = x * Phi(x),  Phi(x) = erfc(-x / sqrt(2)) / 2
        approximate="tanh":  out = x / 2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))

    ``Phi`` is :func:`~numpy_attention.functional.erf.normal_cdf`, the erfc form: for large
    negative x, torch's ``(1 + erf(x / sqrt(2))) / 2`` cancels, and the erfc form keeps
    relative accuracy there (float32 takes one exponential, see that module).

    Parameters
    ----------
    x : ndarray (...)
    approximate : "none" or "tanh"

    Returns
    -------
    out : ndarray (...), x's dtype
    cache : GeluCache
    """
    x = as_float_array(x, "x")
    approximate = check_choice(approximate, "approximate", APPROXIMATIONS)
    if approximate == "tanh":
        # x^3 overflows for huge |x| (tanh(+-inf) = +-1 is the answer); gelu(-inf) = -inf * 0 is NaN, as torch
        with np.errstate(over="ignore", invalid="ignore"):
            inner = TANH_BETA * (x + TANH_KAPPA * x * x * x)
            return 0.5 * x * (1.0 + np.tanh(inner)), GeluCache(x, approximate, None)
    cdf = normal_cdf(x)
    with np.errstate(invalid="ignore"):  # gelu(-inf) = -inf * Phi(-inf) = -inf * 0 is NaN, as torch
        return x * cdf, GeluCache(x, approximate, cdf)


def gelu_backward(dout: np.ndarray, cache: GeluCache) -> np.ndarray:
    """Gradient of the GELU, elementwise.

    Exact form, with phi the standard normal density::

        dx = dout * (Phi(x) + x * phi(x)),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

    tanh form, with ``u = sqrt(2/pi) (x + 0.044715 x^3)`` and ``t = tanh(u)``::

        dx = dout * ((1 + t) / 2 + x / 2 * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 x^2))

    See docs/derivations.md, section "GELU".
    """
    check_cache(cache, GeluCache, "gelu_forward")
    x = cache.x
    dout = check_dout(dout, x.shape, x.dtype)
    if cache.approximate == "tanh":
        with np.errstate(over="ignore", invalid="ignore"):  # huge |x|: as in the forward (inf * 0 is NaN, as torch)
            t = np.tanh(TANH_BETA * (x + TANH_KAPPA * x * x * x))
            du_dx = TANH_BETA * (1.0 + 3.0 * TANH_KAPPA * x * x)
            return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
    with np.errstate(over="ignore", under="ignore"):  # phi underflows to 0 for |x| > ~38: that is its value
        pdf = INV_SQRT_2PI * np.exp(-0.5 * x * x)
    with np.errstate(invalid="ignore"):  # at x = +-inf, x * phi(x) = inf * 0 is NaN, as torch
        return dout * (cache.cdf + x * pdf)

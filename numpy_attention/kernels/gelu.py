"""The GELU kernel: :mod:`numpy_attention.functional.gelu`'s pair, its elements shared between the cores.

The GELU is elementwise, so running the textbook pair on consecutive pieces of
the flattened array gives the same numbers, bit for bit (tests/test_kernels.py),
and NumPy's ufuncs release the GIL: the cores run pieces side by side. Same
arguments, results and cache (:class:`~numpy_attention.functional.gelu.GeluCache`)
as the textbook pair.
"""

from __future__ import annotations

import numpy as np

from ..functional import gelu as textbook
from ..functional.gelu import GeluCache
from ..validation import as_float_array, check_cache, check_choice, check_dout
from .schedule import PARALLEL_MIN_SCORES, pieces, run_chunks


def gelu_forward(x: np.ndarray, approximate: str = "none") -> tuple[np.ndarray, GeluCache]:
    """``gelu(x) = x * Phi(x)`` (or its tanh form), as :func:`numpy_attention.functional.gelu_forward`."""
    x = as_float_array(x, "x")
    approximate = check_choice(approximate, "approximate", textbook.APPROXIMATIONS)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    cdf = np.empty_like(flat) if approximate == "none" else None

    def run(piece: slice) -> None:
        out[piece], cache = textbook.gelu_forward(flat[piece], approximate)
        if cdf is not None:
            cdf[piece] = cache.cdf

    run_chunks(run, pieces(flat.size, flat.itemsize), parallel=flat.size >= PARALLEL_MIN_SCORES)
    return out.reshape(x.shape), GeluCache(x, approximate, None if cdf is None else cdf.reshape(x.shape))


def gelu_backward(dout: np.ndarray, cache: GeluCache) -> np.ndarray:
    """Gradient of the GELU, elementwise, as the textbook ``gelu_backward``::

        dx = dout * (Phi(x) + x * phi(x))     (exact form; the tanh form's derivative likewise)

    See docs/derivations.md, section "GELU".
    """
    check_cache(cache, GeluCache, "gelu_forward")
    dout = check_dout(dout, cache.x.shape, cache.x.dtype).reshape(-1)
    x = cache.x.reshape(-1)
    cdf = None if cache.cdf is None else cache.cdf.reshape(-1)
    dx = np.empty_like(x)

    def run(piece: slice) -> None:
        dx[piece] = textbook.gelu_backward(
            dout[piece], GeluCache(x[piece], cache.approximate, None if cdf is None else cdf[piece]))

    run_chunks(run, pieces(x.size, x.itemsize), parallel=x.size >= PARALLEL_MIN_SCORES)
    return dx.reshape(cache.x.shape)

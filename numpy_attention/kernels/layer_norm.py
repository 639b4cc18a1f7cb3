"""The layer-norm kernel: :mod:`numpy_attention.functional.layer_norm`'s pair, its rows shared between the cores.

Each row is normalized on its own, so the textbook pair run on consecutive pieces
of rows gives its outputs and ``dx`` bit for bit. ``dweight`` and ``dbias`` sum over
every row: each piece sums its own rows and the pieces' sums are added in order,
equal to the textbook's up to rounding (tests/test_kernels.py). Same arguments,
results and cache (:class:`~numpy_attention.functional.layer_norm.LayerNormCache`)
as the textbook pair.
"""

from __future__ import annotations

import math

import numpy as np

from .._args import check_layer_norm_args
from ..functional import layer_norm as textbook
from ..functional.layer_norm import LayerNormCache
from ..validation import check_cache, check_dout
from .schedule import PARALLEL_MIN_SCORES, pieces, run_chunks


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None, eps: float = 1e-5
) -> tuple[np.ndarray, LayerNormCache]:
    """``out = (x - mean) / sqrt(var + eps) * weight + bias`` per row, as the textbook ``layer_norm_forward``."""
    x, weight, bias, eps = check_layer_norm_args(x, weight, bias, eps)
    features = x.shape[-1]
    rows = x.reshape(math.prod(x.shape[:-1]), features)  # not reshape(-1, D): that fails when D is 0
    out, x_hat = np.empty_like(rows), np.empty_like(rows)
    rstd = np.empty((rows.shape[0], 1), dtype=x.dtype)

    def run(piece: slice) -> None:
        out[piece], cache = textbook.layer_norm_forward(rows[piece], weight, bias, eps)
        x_hat[piece], rstd[piece] = cache.x_hat, cache.rstd

    run_chunks(run, pieces(rows.shape[0], features * x.itemsize), parallel=x.size >= PARALLEL_MIN_SCORES)
    cache = LayerNormCache(x_hat.reshape(x.shape), rstd.reshape(*x.shape[:-1], 1), weight, bias is not None)
    return out.reshape(x.shape), cache


def layer_norm_backward(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of the layer norm, as the textbook ``layer_norm_backward``::

        dx      = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),  g = dout * weight
        dweight = sum over rows of dout * x_hat                    (each piece's rows, then the pieces)
        dbias   = sum over rows of dout

    See docs/derivations.md, section "Layer normalization".
    """
    check_cache(cache, LayerNormCache, "layer_norm_forward")
    shape = cache.x_hat.shape
    dout = check_dout(dout, shape, cache.x_hat.dtype)
    features = shape[-1]
    count = math.prod(shape[:-1])
    rows_out, x_hat = dout.reshape(count, features), cache.x_hat.reshape(count, features)
    rstd = cache.rstd.reshape(count, 1)
    dx = np.empty_like(rows_out)
    cut = pieces(count, features * dout.itemsize)
    shares: list[tuple] = [()] * len(cut)  # (dweight, dbias) of each piece's rows

    def run(index: int) -> None:
        piece = cut[index]
        dx[piece], dweight, dbias = textbook.layer_norm_backward(
            rows_out[piece], LayerNormCache(x_hat[piece], rstd[piece], cache.weight, cache.has_bias))
        shares[index] = (dweight, dbias)

    run_chunks(run, range(len(cut)), parallel=dout.size >= PARALLEL_MIN_SCORES)
    dweight = None if cache.weight is None else sum(share[0] for share in shares)
    dbias = sum(share[1] for share in shares) if cache.has_bias else None
    return dx.reshape(shape), dweight, dbias

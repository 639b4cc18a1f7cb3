"""Scaled dot-product attention, forward and backward: the textbook pair.

Semantics follow ``torch.nn.functional.scaled_dot_product_attention``. Per
(batch, head) slice, with Q (L, E), K (T, E), V (T, Ev)::

    S = c Q K^T + M          scores, with the scale c and the additive mask M
    P = softmax(S)           weights: rows sum to 1, or are 0 where every key is masked
    O = (P * Z) V            output, with the dropout factor Z = keep / (1 - p)

This is the spec: every line is one equation of docs/derivations.md, section
"Scaled dot-product attention", over all heads at once. The kernels in
:mod:`numpy_attention.kernels` compute the same function, faster.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._args import check_attention_args
from ..validation import check_cache, check_dout, unbroadcast
from .dropout import draw_keep_mask, dropout_factor
from .softmax import softmax


class AttentionCache(NamedTuple):
    """What the attention backward needs.

    ``weights`` is P, the probabilities before dropout, shape (..., Hq, L, T);
    ``dropout_mask`` the boolean keep-mask of the same shape (None without
    dropout); ``out`` a copy of O, for D = rowsum(dO * O).
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    weights: np.ndarray
    dropout_mask: np.ndarray | None
    dropout_p: float
    scale: float
    out: np.ndarray


def broadcast_qkv(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q, K, V over the full batch of the scores, each k/v head repeated for the G query heads it serves.

    Grouped-query attention as torch's ``enable_gqa=True``: query head h uses k/v
    head h // G (``repeat_interleave``). Unbatched (L, E) input is returned as is.
    """
    if q.ndim == 2:
        return q, k, v
    batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    k, v = (np.repeat(x, q.shape[-3] // max(1, x.shape[-3]), axis=-3) for x in (k, v))
    return tuple(np.broadcast_to(x, (*batch, *x.shape[-3:])) for x in (q, k, v))


def sum_kv(dx: np.ndarray, shape: tuple) -> np.ndarray:
    """The backward of :func:`broadcast_qkv`: sum each group of G query heads' share, then the broadcast batch."""
    if dx.ndim > 2 and dx.shape[-3] != shape[-3]:
        *batch, num_heads, rows, cols = dx.shape
        dx = dx.reshape(*batch, shape[-3], num_heads // shape[-3], rows, cols).sum(axis=-3)
    return unbroadcast(dx, shape)


def causal_mask(num_queries: int, num_keys: int, offset: int = 0) -> np.ndarray:
    """Top-left causal mask (L, T): query i may attend to keys j <= i + offset, as torch's ``is_causal``."""
    return np.tri(num_queries, num_keys, offset, dtype=bool)


def additive_mask(
    attn_mask: np.ndarray | None, is_causal: bool, num_queries: int, num_keys: int, dtype: np.dtype
) -> np.ndarray:
    """M, the mask as numbers added to the scores: 0 where a key may be attended, -inf where not.

    A boolean mask (True = may attend, as torch's SDPA) and ``is_causal`` become 0 / -inf;
    a float mask is added as it is. Adding -inf, rather than writing it over the
    score, keeps a NaN score NaN, as torch does.
    """
    if is_causal:
        attn_mask = causal_mask(num_queries, num_keys)
    if attn_mask is None:
        return np.zeros((), dtype=dtype)
    if attn_mask.dtype == np.bool_:
        return np.where(attn_mask, 0.0, -np.inf).astype(dtype)
    return attn_mask


# inf - inf (a +inf score, or one masked by -inf) is NaN, which spreads to its row as in torch: no warning.
@np.errstate(invalid="ignore")
def attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, AttentionCache]:
    """Scaled dot-product attention, as ``torch.nn.functional.scaled_dot_product_attention``.

    Parameters
    ----------
    q : ndarray (..., Hq, L, E), or (L, E) unbatched
    k : ndarray (..., Hkv, T, E); Hq must be a multiple of Hkv (grouped-query attention)
    v : ndarray (..., Hkv, T, Ev)
    attn_mask : ndarray broadcastable to (..., Hq, L, T), optional
        Boolean: True = may attend. Float: added to the scores (use -inf to block).
    dropout_p : float in [0, 1)
        Dropout on the attention probabilities, rescaled by 1 / (1 - p).
    is_causal : bool
        Top-left causal mask (query i sees keys j <= i). Not combinable with ``attn_mask``.
    scale : float, optional
        c, defaults to 1 / sqrt(E).
    rng : numpy.random.Generator, optional
        Source of the dropout mask.

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        O = (P * Z) V with P = softmax(c Q K^T + M). A query row whose keys are all masked gives 0.
    cache : AttentionCache
    """
    q, k, v, attn_mask, dropout_p, is_causal, scale = check_attention_args(
        q, k, v, attn_mask, dropout_p, is_causal, scale
    )
    Q, K, V = broadcast_qkv(q, k, v)  # (..., Hq, L, E), (..., Hq, T, E), (..., Hq, T, Ev)
    M = additive_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.dtype)
    S = scale * (Q @ K.swapaxes(-1, -2)) + M  # (..., Hq, L, T)
    P = softmax(S)
    keep = draw_keep_mask(P.shape, dropout_p, rng)
    Z = 1.0 if keep is None else dropout_factor(keep, dropout_p, q.dtype)
    O = (P * Z) @ V  # (..., Hq, L, Ev)
    return O, AttentionCache(q, k, v, P, keep, dropout_p, scale, O.copy())


@np.errstate(invalid="ignore")
def attention_backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of scaled dot-product attention with respect to q, k and v.

    Per head, with P the weights, Z the dropout factor and O = (P * Z) V::

        dV = (P * Z)^T dO                  (T, Ev)
        dP = (dO V^T) * Z                  (L, T)
        D  = rowsum(dO * O)                (L, 1)   equals rowsum(dP * P)
        dS = P * (dP - D)                  (L, T)   the softmax backward
        dQ = c dS K                        (L, E)
        dK = c dS^T Q                      (T, E)

    Masked entries have P = 0, so dS = 0 there: no gradient reaches a blocked
    key, and a fully masked row gets none. With grouped heads dK and dV sum
    over the G query heads of each k/v head; broadcast batch axes are summed.

    See docs/derivations.md, section "Scaled dot-product attention".
    """
    check_cache(cache, AttentionCache, "attention_forward")
    q, k, v, P, keep, dropout_p, scale, O = cache
    dO = check_dout(dout, O.shape, q.dtype)
    Q, K, V = broadcast_qkv(q, k, v)
    Z = 1.0 if keep is None else dropout_factor(keep, dropout_p, q.dtype)
    dV = (P * Z).swapaxes(-1, -2) @ dO
    dP = (dO @ V.swapaxes(-1, -2)) * Z
    D = np.sum(dO * O, axis=-1, keepdims=True)
    dS = P * (dP - D)
    dQ = scale * (dS @ K)
    dK = scale * (dS.swapaxes(-1, -2) @ Q)
    return unbroadcast(dQ, q.shape), sum_kv(dK, k.shape), sum_kv(dV, v.shape)


def scaled_dot_product_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The output of :func:`attention_forward` alone, shaped like torch's function of that name."""
    out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng)
    return out

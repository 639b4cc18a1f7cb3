"""Scaled dot-product attention, forward and backward: the textbook pair.

Semantics follow ``torch.nn.functional.scaled_dot_product_attention``. Per
(batch, head) slice, with Q (L, E), K (T, E), V (T, Ev)::

    S = mod(c Q K^T) + M     scores: the scale c, the score modification (soft-cap, ALiBi), the mask M
    P = softmax(S)           weights: rows sum to 1, or are 0 where every key is masked
    O = (P * Z) V            output, with the dropout factor Z = keep / (1 - p)

With ``sinks`` the softmax has one more logit per head in its denominator.

This is the spec: every line is one equation of docs/derivations.md, section
"Scaled dot-product attention", over all heads at once. The kernels in
:mod:`numpy_attention.kernels` compute the same function, faster.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._args import check_attention_args, check_score_options
from ..validation import check_cache, check_dout, unbroadcast
from .dropout import draw_keep_mask, dropout_factor
from .score_mods import ScoreModCache, score_mod_backward, score_mod_forward, sink_grad, softmax_with_sink, visible
from .softmax import softmax


class AttentionCache(NamedTuple):
    """What the attention backward needs.

    ``weights`` is P, the probabilities before dropout, shape (..., Hq, L, T);
    ``dropout_mask`` the boolean keep-mask of the same shape (None without
    dropout); ``out`` a copy of O, for D = rowsum(dO * O); ``score_mod`` what
    the score modification's backward needs; ``sink_weights`` the sink's
    weight P_sink per row, (..., Hq, L, 1), or None without sinks.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    weights: np.ndarray
    dropout_mask: np.ndarray | None
    dropout_p: float
    scale: float
    out: np.ndarray
    score_mod: ScoreModCache
    sink_weights: np.ndarray | None


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


def positions(num_queries: int, num_keys: int, query_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The query and key positions i, j: query i sits at key position i + ``query_offset`` (0: top-left, as torch)."""
    return np.arange(num_queries) + query_offset, np.arange(num_keys)


def additive_mask(attn_mask: np.ndarray | None, visible: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """M, the masks as numbers added to the scores: 0 where a key may be attended, -inf where not.

    ``visible`` is the positional predicate (causal, window); a boolean
    ``attn_mask`` (True = may attend, as torch's SDPA) is ANDed with it, a float
    one added. Adding -inf, rather than writing it over the score, keeps a NaN
    score NaN, as torch does.
    """
    if attn_mask is not None and attn_mask.dtype == np.bool_:
        visible = visible & attn_mask
    M = np.where(visible, 0.0, -np.inf).astype(dtype)
    return M if attn_mask is None or attn_mask.dtype == np.bool_ else M + attn_mask


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
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
    window: tuple[int | None, int | None] | None = None,
    sinks: np.ndarray | None = None,
    query_offset: int = 0,
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
    softcap : float, optional
        kappa > 0: scores ``s = kappa tanh(s / kappa)`` (Gemma 2), before any mask.
    alibi_slopes : ndarray (Hq,), optional
        ALiBi: ``s -= slope_h |i - j|``, after the soft-cap.
    window : (left, right), optional
        Key j is visible to query i only if ``i - left <= j <= i + right``; a side may be None
        (unbounded): ``(4095, 0)`` is Mistral's causal sliding window. ANDed with the other masks.
    sinks : ndarray (Hq,), optional
        One learnable logit per head in every row's softmax denominator, dropped after it
        (gpt-oss): rows then sum to less than 1. The backward then returns dsinks too.
    query_offset : int
        Query i sits at key position i + query_offset (T - L for a KV cache's new queries), for
        ``is_causal``, ``window`` and ``alibi_slopes``; 0 is torch's top-left alignment.

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        O = (P * Z) V with P = softmax(mod(c Q K^T) + M). A query row whose keys are all masked gives 0.
    cache : AttentionCache
    """
    q, k, v, attn_mask, dropout_p, is_causal, scale = check_attention_args(
        q, k, v, attn_mask, dropout_p, is_causal, scale
    )
    softcap, alibi_slopes, window, sinks, query_offset = check_score_options(
        q, softcap, alibi_slopes, window, sinks, query_offset
    )
    Q, K, V = broadcast_qkv(q, k, v)  # (..., Hq, L, E), (..., Hq, T, E), (..., Hq, T, Ev)
    i, j = positions(q.shape[-2], k.shape[-2], query_offset)
    S, mod = score_mod_forward(scale * (Q @ K.swapaxes(-1, -2)), i, j, softcap=softcap, alibi_slopes=alibi_slopes)
    M = additive_mask(attn_mask, visible(i, j, is_causal=is_causal, window=window), q.dtype)
    S = S + M  # (..., Hq, L, T)
    P, P_sink = (softmax(S), None) if sinks is None else softmax_with_sink(S, sinks)
    keep = draw_keep_mask(P.shape, dropout_p, rng)
    Z = 1.0 if keep is None else dropout_factor(keep, dropout_p, q.dtype)
    O = (P * Z) @ V  # (..., Hq, L, Ev)
    return O, AttentionCache(q, k, v, P, keep, dropout_p, scale, O.copy(), mod, P_sink)


@np.errstate(invalid="ignore")
def attention_backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, ...]:
    """Gradients of scaled dot-product attention with respect to q, k and v (and the sinks).

    Per head, with P the weights, Z the dropout factor and O = (P * Z) V::

        dV = (P * Z)^T dO                  (T, Ev)
        dP = (dO V^T) * Z                  (L, T)
        D  = rowsum(dO * O)                (L, 1)   equals rowsum(dP * P)
        dS = mod'(P * (dP - D))            (L, T)   the softmax backward, then the score modification's
        dQ = c dS K                        (L, E)
        dK = c dS^T Q                      (T, E)
        dsinks = -sum(P_sink * D)          (Hq,)    over the batch and the rows, with ``sinks``

    mod' multiplies by the soft-cap's derivative ``1 - tanh(s / kappa)**2``
    (ALiBi and the masks add constants).

    Masked entries have P = 0, so dS = 0 there: no gradient reaches a blocked
    key, and a fully masked row gets none. With grouped heads dK and dV sum
    over the G query heads of each k/v head; broadcast batch axes are summed.

    See docs/derivations.md, section "Scaled dot-product attention".
    """
    check_cache(cache, AttentionCache, "attention_forward")
    q, k, v, P, keep, dropout_p, scale, O, mod, P_sink = cache
    dO = check_dout(dout, O.shape, q.dtype)
    Q, K, V = broadcast_qkv(q, k, v)
    Z = 1.0 if keep is None else dropout_factor(keep, dropout_p, q.dtype)
    dV = (P * Z).swapaxes(-1, -2) @ dO
    dP = (dO @ V.swapaxes(-1, -2)) * Z
    D = np.sum(dO * O, axis=-1, keepdims=True)
    dS = score_mod_backward(P * (dP - D), mod)
    dQ = scale * (dS @ K)
    dK = scale * (dS.swapaxes(-1, -2) @ Q)
    grads = unbroadcast(dQ, q.shape), sum_kv(dK, k.shape), sum_kv(dV, v.shape)
    return grads if P_sink is None else (*grads, sink_grad(P_sink, D))


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
    **options: object,
) -> np.ndarray:
    """The output of :func:`attention_forward` alone, shaped like torch's function of that name."""
    out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng, **options)
    return out

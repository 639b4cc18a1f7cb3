"""Tiled ("flash") attention, forward and backward: the textbook pair of the online softmax.

The same function as :func:`numpy_attention.functional.attention.attention_forward`,
computed one tile of (query rows i, keys j) at a time, so that no L x T array
is ever formed. For each row block i, the key blocks j arrive one after another::

    S_ij = mod(c Q_i K_j^T) + M_ij                     scores of one tile (soft-cap, ALiBi, masks)
    m    = max(m_old, rowmax(S_ij))                    running row maximum
    l    = exp(m_old - m) l + rowsum(exp(S_ij - m))    running row sum
    A    = exp(m_old - m) A + (exp(S_ij - m) * Z_ij) V_j
    O_i  = A / l                                       after the last key block

The forward keeps O and, per query row, m and l; the backward recomputes each
tile's weights P_ij = exp(S_ij - m_i) / l_i from them. A sink logit (``sinks``)
starts every row's m and l, as one more term of the softmax. Two plain loops, one
thread: the kernels in :mod:`numpy_attention.kernels` schedule the same tiles
for speed. See docs/derivations.md, section "Tiled attention: online softmax
forward and tiled backward".
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._args import check_attention_args, check_score_options
from ..validation import check_cache, check_dout, check_positive_int, unbroadcast
from .attention import additive_mask, broadcast_qkv, positions, sum_kv
from .dropout import draw_dropout_seed, position_dropout_factor
from .score_mods import ScoreModCache, score_mod_backward, score_mod_forward, sink_grad, visible

DEFAULT_BLOCK_SIZE = 64


class FlashAttentionCache(NamedTuple):
    """What the tiled backward needs: the inputs and options, O, and each query row's m and l; nothing L x T.

    ``row_max`` is m and ``row_sum`` is l, each (..., Hq, L, 1); a row whose keys
    are all masked has m = 0 and l = 0 (or m = sink, l = 1 with ``sinks``).
    ``dropout_seed`` regenerates every tile's keep-mask (None without dropout).
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    attn_mask: np.ndarray | None
    is_causal: bool
    dropout_seed: np.uint64 | None
    dropout_p: float
    scale: float
    block_size: tuple[int, int]
    softcap: float | None
    alibi_slopes: np.ndarray | None
    window: tuple | None
    sinks: np.ndarray | None
    query_offset: int
    out: np.ndarray
    row_max: np.ndarray
    row_sum: np.ndarray


def block_shape(block_size: Any) -> tuple[int, int]:
    """``block_size`` as (query rows, keys): an int is a square tile, None the default."""
    if block_size is None:
        return DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_SIZE
    if isinstance(block_size, tuple) and len(block_size) == 2:
        return check_positive_int(block_size[0], "block_size[0]"), check_positive_int(block_size[1], "block_size[1]")
    size = check_positive_int(block_size, "block_size")
    return size, size


def blocks(length: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` covering range(length); the last may be shorter."""
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


def tile_scores(
    cache: FlashAttentionCache, Q: np.ndarray, K: np.ndarray, mask: np.ndarray | None, i: slice, j: slice
) -> tuple[np.ndarray, ScoreModCache]:
    """S_ij = mod(c Q_i K_j^T) + M_ij for tile (i, j), with the options in ``cache``, and what mod's backward needs."""
    query_pos, key_pos = positions(Q.shape[-2], K.shape[-2], cache.query_offset)
    S_ij, mod_ij = score_mod_forward(cache.scale * (Q[..., i, :] @ K[..., j, :].swapaxes(-1, -2)), query_pos[i],
                                     key_pos[j], softcap=cache.softcap, alibi_slopes=cache.alibi_slopes)
    M_ij = additive_mask(None if mask is None else mask[..., i, j],
                         visible(query_pos[i], key_pos[j], is_causal=cache.is_causal, window=cache.window), Q.dtype)
    return S_ij + M_ij, mod_ij


def sink_logits(sinks: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """The sink logit of each head, (Hq, 1, 1), or -inf without sinks: the softmax term exp(sink - m)."""
    return np.full((), -np.inf, dtype=dtype) if sinks is None else sinks[:, None, None]


# inf - inf (a +inf score, or one masked by -inf) is NaN, which spreads to its row as in torch: no warning.
@np.errstate(invalid="ignore")
def flash_attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    attn_mask: np.ndarray | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    rng: np.random.Generator | None = None,
    block_size: int | tuple[int, int] | None = None,
    softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
    window: tuple[int | None, int | None] | None = None,
    sinks: np.ndarray | None = None,
    query_offset: int = 0,
) -> tuple[np.ndarray, FlashAttentionCache]:
    """Scaled dot-product attention in tiles with an online softmax; memory linear in L and T.

    Same arguments, semantics and output as :func:`attention_forward` (see there),
    plus ``block_size``: an int B makes tiles of B queries by B keys, a pair
    (rows, keys) tiles of that shape; any positive sizes give the same result up
    to rounding (default 64). For each row block i and key block j::

        m_new = max(m, rowmax(S_ij));   c = exp(m - m_new)
        l     = c l + rowsum(exp(S_ij - m_new))
        A     = c A + (exp(S_ij - m_new) * Z_ij) V_j
        O_i   = A / l

    starting from m = -inf, l = 0 (or m = sink, l = 1 with ``sinks``) and A = 0.
    The dropout factor Z_ij of each tile comes from one seed drawn from ``rng``
    and each entry's position (:mod:`numpy_attention.functional.dropout`), so the
    backward regenerates it; it is the same for every ``block_size``.

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        A query row whose keys are all masked gives 0.
    cache : FlashAttentionCache
        The inputs and options, O and each query row's m and l: no L x T array.
    """
    q, k, v, attn_mask, dropout_p, is_causal, scale = check_attention_args(
        q, k, v, attn_mask, dropout_p, is_causal, scale
    )
    options = check_score_options(q, softcap, alibi_slopes, window, sinks, query_offset)
    Q, K, V = broadcast_qkv(q, k, v)
    rows = (*Q.shape[:-1], 1)
    cache = FlashAttentionCache(q, k, v, attn_mask, is_causal, draw_dropout_seed(dropout_p, rng), dropout_p, scale,
                                block_shape(block_size), *options, out=np.zeros((*Q.shape[:-1], V.shape[-1]), q.dtype),
                                row_max=np.zeros(rows, q.dtype), row_sum=np.zeros(rows, q.dtype))
    scores_shape, sink = (*Q.shape[:-1], K.shape[-2]), sink_logits(cache.sinks, q.dtype)
    mask = None if attn_mask is None else np.broadcast_to(attn_mask, scores_shape)  # a view: no L x T memory
    for i in blocks(Q.shape[-2], cache.block_size[0]):
        m = np.broadcast_to(sink, (*Q.shape[:-2], i.stop - i.start, 1)).astype(q.dtype)  # the sink's term starts m
        l, A = (~np.isneginf(m)).astype(q.dtype), np.zeros((*m.shape[:-1], V.shape[-1]), dtype=q.dtype)
        for j in blocks(K.shape[-2], cache.block_size[1]):
            S_ij, _ = tile_scores(cache, Q, K, mask, i, j)
            m_new = np.maximum(m, S_ij.max(axis=-1, keepdims=True))
            shift = np.where(np.isneginf(m_new), 0.0, m_new)  # no key seen yet: exp(-inf - 0) = 0
            E_ij, c = np.exp(S_ij - shift), np.exp(m - shift)
            Z_ij = position_dropout_factor(cache.dropout_seed, dropout_p, scores_shape, i, j, q.dtype)
            l = c * l + np.sum(E_ij, axis=-1, keepdims=True)
            A = c * A + (E_ij * Z_ij) @ V[..., j, :]
            m = m_new
        cache.out[..., i, :] = np.divide(A, l, out=A, where=l != 0)  # l = 0, every key masked: A = 0 V stays
        cache.row_max[..., i, :], cache.row_sum[..., i, :] = np.where(np.isneginf(m), 0.0, m), l
    return cache.out.copy(), cache


@np.errstate(invalid="ignore")
def flash_attention_backward(dout: np.ndarray, cache: FlashAttentionCache) -> tuple[np.ndarray, ...]:
    """Gradients of tiled attention with respect to q, k and v (and the sinks), one tile at a time.

    With D = rowsum(dO * O) per query row (equal to rowsum(dP * P) of the dense
    backward), each tile (i, j) recomputes its weights from m_i and l_i and adds
    its share::

        P_ij  = exp(S_ij - m_i) / l_i
        dV_j += (P_ij * Z_ij)^T dO_i
        dP_ij = (dO_i V_j^T) * Z_ij
        dS_ij = mod'(P_ij * (dP_ij - D_i))
        dQ_i += c dS_ij K_j
        dK_j += c dS_ij^T Q_i

    and, with sinks, ``dsinks = -sum(P_sink * D)`` with ``P_sink = exp(sink - m) / l``.
    A fully masked row has l = 0 and P = 0: its gradients are 0.

    See docs/derivations.md, section "Tiled attention: online softmax forward and tiled backward".
    """
    check_cache(cache, FlashAttentionCache, "flash_attention_forward")
    q, k, v, attn_mask, dropout_p, scale, O, m, l = (cache.q, cache.k, cache.v, cache.attn_mask, cache.dropout_p,
                                                     cache.scale, cache.out, cache.row_max, cache.row_sum)
    dO = check_dout(dout, O.shape, q.dtype)
    Q, K, V = broadcast_qkv(q, k, v)
    dQ, dK, dV = np.zeros(Q.shape, q.dtype), np.zeros(K.shape, q.dtype), np.zeros(V.shape, q.dtype)
    D = np.sum(dO * O, axis=-1, keepdims=True)
    inv_l = np.divide(1.0, l, out=np.zeros_like(l), where=l != 0)  # 1 / l, and 0 where every key is masked
    scores_shape = (*Q.shape[:-1], K.shape[-2])
    mask = None if attn_mask is None else np.broadcast_to(attn_mask, scores_shape)
    for i in blocks(Q.shape[-2], cache.block_size[0]):
        for j in blocks(K.shape[-2], cache.block_size[1]):
            S_ij, mod_ij = tile_scores(cache, Q, K, mask, i, j)
            P_ij = np.exp(S_ij - m[..., i, :]) * inv_l[..., i, :]
            Z_ij = position_dropout_factor(cache.dropout_seed, dropout_p, scores_shape, i, j, q.dtype)
            dV[..., j, :] += (P_ij * Z_ij).swapaxes(-1, -2) @ dO[..., i, :]
            dP_ij = (dO[..., i, :] @ V[..., j, :].swapaxes(-1, -2)) * Z_ij
            dS_ij = score_mod_backward(P_ij * (dP_ij - D[..., i, :]), mod_ij)
            dQ[..., i, :] += scale * (dS_ij @ K[..., j, :])
            dK[..., j, :] += scale * (dS_ij.swapaxes(-1, -2) @ Q[..., i, :])
    grads = unbroadcast(dQ, q.shape), sum_kv(dK, k.shape), sum_kv(dV, v.shape)
    if cache.sinks is None:
        return grads
    return (*grads, sink_grad(np.exp(sink_logits(cache.sinks, q.dtype) - m) * inv_l, D))

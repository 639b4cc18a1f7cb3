"""Tiled ("flash") attention, forward and backward: the textbook pair of the online softmax.

The same function as :func:`numpy_attention.functional.attention.attention_forward`,
computed one tile of (query rows i, keys j) at a time, so that no L x T array
is ever formed. For each row block i, the key blocks j arrive one after another::

    S_ij = c Q_i K_j^T + M_ij                          scores of one tile
    m    = max(m_old, rowmax(S_ij))                    running row maximum
    l    = exp(m_old - m) l + rowsum(exp(S_ij - m))    running row sum
    A    = exp(m_old - m) A + (exp(S_ij - m) * Z_ij) V_j
    O_i  = A / l                                       after the last key block

The forward keeps O and, per query row, m and l; the backward recomputes each
tile's weights P_ij = exp(S_ij - m_i) / l_i from them. Two plain loops, one
thread: the kernels in :mod:`numpy_attention.kernels` schedule the same tiles
for speed. See docs/derivations.md, section "Tiled attention: online softmax
forward and tiled backward".
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._args import check_attention_args
from ..validation import check_cache, check_dout, check_positive_int, unbroadcast
from .attention import broadcast_qkv, sum_kv
from .dropout import draw_dropout_seed, position_dropout_factor

DEFAULT_BLOCK_SIZE = 64


class FlashAttentionCache(NamedTuple):
    """What the tiled backward needs: the inputs, O, and each query row's m and l; nothing L x T.

    ``row_max`` is m (0 for a row whose keys are all masked) and ``row_sum`` is l
    (0 for such a row), each (..., Hq, L, 1). ``dropout_seed`` regenerates every
    tile's keep-mask (None without dropout).
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


def tile_mask(attn_mask: np.ndarray | None, is_causal: bool, i: slice, j: slice, dtype: np.dtype) -> np.ndarray:
    """M_ij, the additive mask of tile (i, j): 0 where query i may attend key j, -inf where not (or the float mask)."""
    if is_causal:
        visible = np.arange(j.start, j.stop) <= np.arange(i.start, i.stop)[:, None]
    elif attn_mask is None:
        return np.zeros((), dtype=dtype)
    elif attn_mask.dtype == np.bool_:
        visible = attn_mask[..., i, j]
    else:
        return attn_mask[..., i, j]
    return np.where(visible, 0.0, -np.inf).astype(dtype)


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

    The dropout factor Z_ij of each tile comes from one seed drawn from ``rng``
    and each entry's position (:mod:`numpy_attention.functional.dropout`), so the
    backward regenerates it; it is the same for every ``block_size``.

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        A query row whose keys are all masked gives 0.
    cache : FlashAttentionCache
        The inputs, O and each query row's m and l: no L x T array.
    """
    q, k, v, attn_mask, dropout_p, is_causal, scale = check_attention_args(
        q, k, v, attn_mask, dropout_p, is_causal, scale
    )
    block_size, seed = block_shape(block_size), draw_dropout_seed(dropout_p, rng)
    Q, K, V = broadcast_qkv(q, k, v)
    O = np.zeros((*Q.shape[:-1], V.shape[-1]), dtype=q.dtype)
    m_out, l_out = np.zeros((*Q.shape[:-1], 1), dtype=q.dtype), np.zeros((*Q.shape[:-1], 1), dtype=q.dtype)
    scores_shape = (*Q.shape[:-1], K.shape[-2])
    mask = None if attn_mask is None else np.broadcast_to(attn_mask, scores_shape)  # a view: no L x T memory
    for i in blocks(Q.shape[-2], block_size[0]):
        m = np.full((*Q.shape[:-2], i.stop - i.start, 1), -np.inf, dtype=q.dtype)
        l, A = np.zeros_like(m), np.zeros((*m.shape[:-1], V.shape[-1]), dtype=q.dtype)
        for j in blocks(K.shape[-2], block_size[1]):
            M_ij = tile_mask(mask, is_causal, i, j, q.dtype)
            S_ij = scale * (Q[..., i, :] @ K[..., j, :].swapaxes(-1, -2)) + M_ij
            m_new = np.maximum(m, S_ij.max(axis=-1, keepdims=True))
            shift = np.where(np.isneginf(m_new), 0.0, m_new)  # no key seen yet: exp(-inf - 0) = 0
            E_ij, c = np.exp(S_ij - shift), np.exp(m - shift)
            Z_ij = position_dropout_factor(seed, dropout_p, scores_shape, i, j, q.dtype)
            l = c * l + np.sum(E_ij, axis=-1, keepdims=True)
            A = c * A + (E_ij * Z_ij) @ V[..., j, :]
            m = m_new
        O[..., i, :] = np.divide(A, l, out=np.zeros_like(A), where=l != 0)  # l = 0: every key masked
        m_out[..., i, :], l_out[..., i, :] = np.where(np.isneginf(m), 0.0, m), l
    return O, FlashAttentionCache(
        q, k, v, attn_mask, is_causal, seed, dropout_p, scale, block_size, O.copy(), m_out, l_out
    )


@np.errstate(invalid="ignore")
def flash_attention_backward(
    dout: np.ndarray, cache: FlashAttentionCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of tiled attention with respect to q, k and v, one tile at a time.

    With D = rowsum(dO * O) per query row (equal to rowsum(dP * P) of the dense
    backward), each tile (i, j) recomputes its weights from m_i and l_i and adds
    its share::

        P_ij  = exp(S_ij - m_i) / l_i
        dV_j += (P_ij * Z_ij)^T dO_i
        dP_ij = (dO_i V_j^T) * Z_ij
        dS_ij = P_ij * (dP_ij - D_i)
        dQ_i += c dS_ij K_j
        dK_j += c dS_ij^T Q_i

    A fully masked row has l = 0 and P = 0: its gradients are 0.

    See docs/derivations.md, section "Tiled attention: online softmax forward and tiled backward".
    """
    check_cache(cache, FlashAttentionCache, "flash_attention_forward")
    q, k, v, attn_mask, is_causal, seed, dropout_p, scale, block_size, O, m, l = cache
    dO = check_dout(dout, O.shape, q.dtype)
    Q, K, V = broadcast_qkv(q, k, v)
    dQ, dK, dV = np.zeros(Q.shape, q.dtype), np.zeros(K.shape, q.dtype), np.zeros(V.shape, q.dtype)
    D = np.sum(dO * O, axis=-1, keepdims=True)
    inv_l = np.divide(1.0, l, out=np.zeros_like(l), where=l != 0)  # 1 / l, and 0 where every key is masked
    scores_shape = (*Q.shape[:-1], K.shape[-2])
    mask = None if attn_mask is None else np.broadcast_to(attn_mask, scores_shape)
    for i in blocks(Q.shape[-2], block_size[0]):
        for j in blocks(K.shape[-2], block_size[1]):
            M_ij = tile_mask(mask, is_causal, i, j, q.dtype)
            S_ij = scale * (Q[..., i, :] @ K[..., j, :].swapaxes(-1, -2)) + M_ij
            P_ij = np.exp(S_ij - m[..., i, :]) * inv_l[..., i, :]
            Z_ij = position_dropout_factor(seed, dropout_p, scores_shape, i, j, q.dtype)
            dV[..., j, :] += (P_ij * Z_ij).swapaxes(-1, -2) @ dO[..., i, :]
            dP_ij = (dO[..., i, :] @ V[..., j, :].swapaxes(-1, -2)) * Z_ij
            dS_ij = P_ij * (dP_ij - D[..., i, :])
            dQ[..., i, :] += scale * (dS_ij @ K[..., j, :])
            dK[..., j, :] += scale * (dS_ij.swapaxes(-1, -2) @ Q[..., i, :])
    return unbroadcast(dQ, q.shape), sum_kv(dK, k.shape), sum_kv(dV, v.shape)

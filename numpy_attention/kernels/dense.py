"""The dense attention kernel: the textbook pair's function, scheduled for speed; it stores P.

``attention_forward`` / ``attention_backward`` here take the arguments and give the
results of :mod:`numpy_attention.functional.attention` (to 1e-12 relative in
float64, tests/test_kernels.py), computing them tile by tile on the cores:
Q is scaled instead of the scores, each tile of query rows stays in a core's
cache from Q K^T through the softmax to the product with V, causal tiles stop at
their last query's key, k/v heads run on the cores with a one-thread BLAS, the
softmax skips its shift when Cauchy-Schwarz bounds the scores, and the weights'
memory is recycled. docs/performance.md tells each step and what it bought.
Per tile, with S the scores, P the weights, Z the dropout factor::

    S = (c Q) K^T + M        P = softmax(S)        O = (P * Z) V

See docs/derivations.md, section "Scaled dot-product attention".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._args import check_attention_args, check_score_options
from ..functional.attention import additive_mask
from ..functional.dropout import draw_keep_mask, dropout_factor
from ..functional.score_mods import ScoreModCache, score_mod_backward, sink_grad, softmax_with_sink, visible
from ..validation import check_cache, check_dout, unbroadcast
from . import buffers
from .schedule import attention_chunks, for_each_chunk, query_tiles
from .score_options import ScoreOptions
from .softmax import EXP_SAFE_BOUND, softmax_rows


class AttentionCache(NamedTuple):
    """What the attention backward needs.

    ``weights`` are the probabilities P before dropout, shape (..., Hq, L, T);
    ``dropout_mask`` is the boolean keep-mask of the same shape, or None.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    weights: np.ndarray
    dropout_mask: np.ndarray | None
    dropout_p: float
    scale: float
    out: np.ndarray  # the forward output: the softmax backward's rowsum(dP * P) is rowsum(dO * O)
    # (..., Hkv) bool: this k/v head's tiles skipped the keys no query of theirs sees (causal tiles
    # stop at their last query's key, see query_tiles; with the options, each row tile's band), as
    # the backward's do; False where the head's inputs were not finite.
    causal_heads: np.ndarray
    options: ScoreOptions | None = None  # today's options, or None without them
    tanh_scaled: np.ndarray | None = None  # tanh(S / c) with soft-capping, (..., Hq, L, T), for mod'
    sink_weights: np.ndarray | None = None  # P_sink with sinks, (..., Hq, L, 1)


# Grouped-query attention: query head h uses k/v head h // G, where G = Hq / Hkv
# (torch's repeat_interleave). The pair below views the query heads as (..., Hkv, G, L, X)
# (by_group) against k/v heads with an axis of 1 there, and sums dK, dV over G. The tiled
# implementation reshapes (..., Hq, L, X) to (..., Hkv, G*L, X) instead: the G query
# heads of a group become extra rows of one k/v head, so a single batched matmul serves
# the whole group and dK, dV sum over the group for free.


def split_groups(x: np.ndarray, num_kv_heads: int) -> np.ndarray:
    """(..., Hq, L, X) -> (..., Hkv, G*L, X): each group's query heads as extra rows."""
    *batch, num_heads, rows, cols = x.shape
    if num_heads == num_kv_heads:  # no grouping (also covers 0 heads, an empty batch of 3-D input)
        return x
    return x.reshape(*batch, num_kv_heads, (num_heads // num_kv_heads) * rows, cols)


def merge_groups(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(..., Hkv, G*L, X) -> (..., Hq, L, X), the inverse of :func:`split_groups`."""
    *batch, num_kv_heads, group_rows, cols = x.shape
    if num_heads == num_kv_heads:
        return x
    return x.reshape(*batch, num_heads, group_rows * num_kv_heads // num_heads, cols)


def with_head_axis(x: np.ndarray) -> np.ndarray:
    """Unbatched (L, E) input is one head: view it as (1, L, E)."""
    return x[None] if x.ndim == 2 else x


def causal_mask(num_queries: int, num_keys: int, offset: int = 0) -> np.ndarray:
    """Top-left causal mask (L, T): query i may attend to keys j <= i + offset, as torch's ``is_causal``.

    ``offset`` is the first query's position minus the first key's, for a tile of a larger mask.
    """
    return visible(np.arange(num_queries) + offset, np.arange(num_keys), is_causal=True)


def apply_mask(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean mask: False -> -inf (True may attend). Float mask: added to the scores."""
    return scores if mask is None else scores + additive_mask(mask, np.True_, scores.dtype)


def all_finite(*arrays: np.ndarray) -> bool:
    """No NaN or inf in any of ``arrays``: one sum each, since NaN and inf survive a sum.

    A finite sum that overflows answers False, which only costs the skipped work.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return all(math.isfinite(np.sum(array)) for array in arrays)


def scores_bound(q_scaled: np.ndarray, k: np.ndarray) -> float:
    """An upper bound on every ``|scale * q_i . k_j|``: ``max_i |scale q_i| * max_j |k_j|`` (Cauchy-Schwarz).

    NaN or inf when an input is not finite (or its norm overflows).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        squared = [np.einsum("...e,...e->...", x, x).max(initial=0.0) for x in (q_scaled, k)]
        return math.sqrt(squared[0] * squared[1])


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
    """Scaled dot-product attention: the textbook ``attention_forward``'s arguments and results, faster.

    q (..., Hq, L, E), k (..., Hkv, T, E), v (..., Hkv, T, Ev); see
    :func:`numpy_attention.functional.attention_forward` for every option (``softcap``,
    ``alibi_slopes``, ``window``, ``sinks`` and ``query_offset`` included). Per tile of
    query rows: ``S = mod((c Q) K^T) + M``, ``P = softmax(S)``, ``O = (P * Z) V``; with
    ``is_causal`` or ``window``, a tile computes only the keys its rows may see.
    """
    q, k, v, attn_mask, dropout_p, is_causal, scale = check_attention_args(
        q, k, v, attn_mask, dropout_p, is_causal, scale
    )
    options = ScoreOptions(*check_score_options(q, softcap, alibi_slopes, window, sinks, query_offset), is_causal)
    options = options if options.given else None  # None: the plain path, torch's options only
    q4, k4, v4 = with_head_axis(q), with_head_axis(k), with_head_axis(v)
    batch = np.broadcast_shapes(q4.shape[:-3], k4.shape[:-3], v4.shape[:-3])
    num_heads, num_kv_heads, num_queries, num_keys = q4.shape[-3], k4.shape[-3], q4.shape[-2], k4.shape[-2]
    weights = buffers.empty((*batch, num_heads, num_queries, num_keys), q.dtype)
    # The output takes q's memory order (NumPy keeps it when the number of dimensions is unchanged):
    # multi-head attention's heads are views of (N, L, H, D) memory, and an output laid out the
    # same way merges back into (N, L, H * D) without a copy. The gradients take their inputs' order.
    out = np.empty_like(q4, shape=(*batch, num_heads, num_queries, v4.shape[-1]))
    saved_out = np.empty_like(out)  # the cache's copy: a caller may modify the returned output in place
    dropout_mask = draw_keep_mask(weights.shape if q.ndim > 2 else weights.shape[1:], dropout_p, rng)
    # Masks of 0 and -inf only (none, boolean, causal) keep every score within the bound of
    # scores_bound; a float mask may move them anywhere.
    zero_or_blocking_mask = attn_mask is None or attn_mask.dtype == np.bool_
    # A float mask is its own additive form; a boolean one becomes 0 and -inf.
    mask = attn_mask if not zero_or_blocking_mask else additive_mask(attn_mask, np.True_, q.dtype)
    # Views (no copies) with each k/v head's G query heads on an axis of their own,
    # (..., Hkv, G, L, X), and the k/v heads with an axis of 1 that broadcasts against it.
    q5 = by_group(np.broadcast_to(q4, (*batch, *q4.shape[-3:])), num_kv_heads)
    k5, v5 = (np.broadcast_to(x, (*batch, *x.shape[-3:]))[..., None, :, :] for x in (k4, v4))
    weights5, out5, saved5 = (by_group(x, num_kv_heads) for x in (weights, out, saved_out))
    mask5 = None if mask is None else by_group(np.broadcast_to(mask, weights.shape), num_kv_heads)
    keep5 = None if dropout_mask is None else by_group(with_head_axis(dropout_mask), num_kv_heads)
    # With soft-capping the backward needs tanh(S / c), with sinks each row's P_sink. tanh is 0 outside
    # the bands (never computed): a backward that visits every key (a NaN in dO) multiplies P = 0 by 1 there.
    tanh_scaled = None if options is None or options.softcap is None else np.zeros_like(weights)
    sink_weights = None if options is None or options.sinks is None else np.empty_like(weights[..., :1])
    tanh5, sink5 = (None if x is None else by_group(x, num_kv_heads) for x in (tanh_scaled, sink_weights))
    # Soft-capping bounds every score by c; ALiBi's bias grows with the distance; without either the
    # Cauchy-Schwarz bound below decides whether the softmax may skip its shift.
    capped = options is not None and options.softcap is not None and options.softcap <= EXP_SAFE_BOUND[q.dtype]
    no_alibi = options is None or options.alibi_slopes is None
    skip_masked = is_causal or (options is not None and options.banded)
    causal_heads = np.zeros((*batch, num_kv_heads), dtype=bool)
    chunks = attention_chunks(
        batch, weights5.shape[-4:-2], query_tiles(num_queries, num_keys, q.itemsize, skip_masked), num_keys,
        q.itemsize,
    )

    def option_weights(scores: np.ndarray, heads: tuple, rows: slice, keys: slice, shift: bool) -> np.ndarray:
        """P of one tile (hk, G, rows, keys) of scaled scores, with the options: mod, M, then the softmax."""
        kv_heads, group = range(num_kv_heads)[heads[-1]], num_heads // max(1, num_kv_heads)
        query_heads = slice(kv_heads.start * group, kv_heads.stop * group)  # the chunk's heads among all Hq
        by_head = (math.prod(scores.shape[:-2]), *scores.shape[-2:])  # (hk G, rows, keys): heads on axis -3
        tile_mask = None if mask5 is None else mask5[heads][..., rows, keys].reshape(by_head)
        S, mod = options.modify(scores.reshape(by_head), query_heads, rows, keys, tile_mask)
        if mod is not None and mod.tanh_scaled is not None:
            tanh5[heads][..., rows, keys] = mod.tanh_scaled.reshape(scores.shape)
        if options.sinks is None:
            P = softmax_rows(S, shift=shift)
        else:
            P, P_sink = softmax_with_sink(S, options.sinks[query_heads])
            sink5[heads][..., rows, :] = P_sink.reshape(*scores.shape[:-1], 1)
        return P.reshape(scores.shape)

    @np.errstate(invalid="ignore")  # NaN from inf - inf spreads as in torch (threads: set here)
    def attend(heads: tuple) -> None:
        # Scaling Q (L x E) instead of the scores (L x T) is the same product, cheaper.
        q_heads, k_heads, v_heads = q5[heads] * scale, k5[heads], v5[heads]
        bound = scores_bound(q_heads, k_heads)
        # Skipping the masked keys changes nothing for finite inputs; a NaN or inf there reaches every
        # query of its head in torch (which adds the mask to the scores), so such heads compute all keys.
        skip = skip_masked and math.isfinite(bound) and all_finite(v_heads)
        causal = skip and options is None  # the plain causal tiles (with options, modify masks each tile)
        causal_heads[heads] = skip
        if is_causal and options is None:  # the whole (L, T) mask serves only heads that compute every key
            heads_mask = None if causal else additive_mask(None, causal_mask(num_queries, num_keys), q.dtype)
        else:
            heads_mask = None if mask5 is None else mask5[heads]
        # Within the bound exp stays in range: the softmax skips its shift by the row maximum.
        shift = not (zero_or_blocking_mask and no_alibi and (capped or bound <= EXP_SAFE_BOUND[q.dtype]))
        # K^T stored as such (E, T): BLAS multiplies a short tile of rows by it faster than by a
        # transposed view of K, most of all for the short causal tiles (docs/performance.md).
        k_t = np.ascontiguousarray(k_heads.swapaxes(-1, -2))
        weights_heads, out_heads = weights5[heads], out5[heads]
        for rows, keys in query_tiles(num_queries, num_keys, q.itemsize, skip):
            if options is not None and skip:  # the keys some query of the rows may see (window, offset)
                keys = options.key_range(rows, num_keys)
            # scores = scale * Q K^T + mask, written straight into the weights buffer, where
            # the softmax then runs in place. NumPy runs element-wise ops on a strided array
            # row by row, so a tile that is not contiguous (part of a head) is built apart.
            tile = weights_heads[..., rows, keys]
            contiguous = tile.flags.c_contiguous
            scores = np.matmul(q_heads[..., rows, :], k_t[..., keys], out=tile if contiguous else None)
            if options is not None:  # a new array: mod, M and the softmax do not run in place
                probs = option_weights(scores, heads, rows, keys, shift)
            else:
                if causal:
                    # Keys left of the tile's first query are visible to all its rows; past it, a row
                    # sees the keys up to its own query. The inputs are finite: -inf may overwrite.
                    diagonal = scores[..., rows.start :]
                    np.copyto(diagonal, -np.inf, where=~causal_mask(*diagonal.shape[-2:]))
                elif heads_mask is not None:
                    scores += heads_mask[..., rows, keys]
                probs = softmax_rows(scores, shift=shift)
            if not contiguous or options is not None:
                tile[...] = probs
            if keys.stop < num_keys:  # a causal tile: the keys after its last query get weight 0
                weights_heads[..., rows, keys.stop :] = 0.0
            if keys.start > 0:  # a band's tile: so do the keys before its first query's
                weights_heads[..., rows, : keys.start] = 0.0
            if keep5 is not None:
                probs = probs * dropout_factor(keep5[heads][..., rows, keys], dropout_p, q.dtype)
            np.matmul(probs, v_heads[..., keys, :], out=out_heads[..., rows, :])
        saved5[heads] = out_heads

    for_each_chunk(attend, chunks, weights.size)
    if q.ndim == 2:
        weights, out, saved_out = weights[0], out[0], saved_out[0]
    if q.ndim == 2 and tanh_scaled is not None:
        tanh_scaled = tanh_scaled[0]
    return out, AttentionCache(q, k, v, weights, dropout_mask, dropout_p, scale, saved_out, causal_heads, options,
                               tanh_scaled, sink_weights)


def by_group(x: np.ndarray, num_kv_heads: int) -> np.ndarray:
    """(..., Hq, L, X) -> (..., Hkv, G, L, X): query head j G + g at [..., j, g] (a view)."""
    *batch, num_heads, rows, cols = x.shape
    return x.reshape(*batch, num_kv_heads, num_heads // max(1, num_kv_heads), rows, cols)


def attention_output_shape(cache: AttentionCache) -> tuple:
    """The forward output's shape: the batch of ``weights @ v``, then (Hq, L, Ev)."""
    return cache.out.shape


@np.errstate(invalid="ignore")
def attention_backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, ...]:
    """Gradients of scaled dot-product attention with respect to q, k and v (and the sinks): the textbook's.

    Per head, with P the weights, Z the dropout factor and O = (P * Z) V, tile by tile::

        dV = (P * Z)^T dO                  (T, Ev)   summed over the row tiles
        dP = (dO V^T) * Z                  (L, T)
        D  = rowsum(dO * O)                (L, 1)    equals rowsum(dP * P), over Ev columns instead of T
        dS = P * (dP - D)                  (L, T)
        dQ = c dS K                        (L, E)
        dK = c dS^T Q                      (T, E)    summed over the row tiles

    c is applied once to the (.., E) results. With soft-capping, dS is then multiplied by mod' =
    1 - tanh(S / c)**2; with sinks, ``dsinks = -sum(P_sink * D)`` is the fourth gradient (see the
    textbook backward). Masked entries have P = 0, so dS = 0 there. With
    grouped heads, dK and dV sum over the G query heads of each k/v head (they are rows of one
    product); with broadcast batch dimensions, gradients sum over the broadcast axes.

    See docs/derivations.md, section "Scaled dot-product attention".
    """
    check_cache(cache, AttentionCache, "attention_forward")
    q, k, v, weights, dropout_mask, dropout_p, scale, out, causal_heads, options, tanh_scaled, sink_weights = cache
    dout = check_dout(dout, attention_output_shape(cache), q.dtype)
    q4, k4, v4 = with_head_axis(q), with_head_axis(k), with_head_axis(v)
    weights4, out4, dout4 = with_head_axis(weights), with_head_axis(out), with_head_axis(dout)
    batch, num_kv_heads, num_queries, num_keys = weights4.shape[:-3], k4.shape[-3], q4.shape[-2], k4.shape[-2]
    q5 = by_group(np.broadcast_to(q4, (*batch, *q4.shape[-3:])), num_kv_heads)
    k5, v5 = (np.broadcast_to(x, (*batch, *x.shape[-3:]))[..., None, :, :] for x in (k4, v4))
    weights5, out5, dout5 = (by_group(x, num_kv_heads) for x in (weights4, out4, dout4))
    keep5 = None if dropout_mask is None else by_group(with_head_axis(dropout_mask), num_kv_heads)
    tanh5 = None if tanh_scaled is None else by_group(with_head_axis(tanh_scaled), num_kv_heads)
    dq = np.empty_like(q4, shape=(*batch, *q4.shape[-3:]))  # in the inputs' memory order, as the forward's output
    dk, dv = np.zeros_like(k4, shape=(*batch, *k4.shape[-3:])), np.zeros_like(v4, shape=(*batch, *v4.shape[-3:]))
    dq5 = by_group(dq, num_kv_heads)
    chunks = attention_chunks(
        batch, weights5.shape[-4:-2], query_tiles(num_queries, num_keys, q.itemsize, bool(causal_heads.any())),
        num_keys, q.itemsize,
    )

    @np.errstate(invalid="ignore")  # NaN from inf - inf spreads as in torch (threads: set here)
    def attend_backward(heads: tuple) -> None:
        q_heads, k_heads, dout_heads = q5[heads], k5[heads], dout5[heads]
        # V^T stored as such, for the product dO V^T (see K^T in the forward).
        v_t = np.ascontiguousarray(v5[heads].swapaxes(-1, -2))
        # rowsum(dP * P) of the softmax backward, as rowsum(dO * O): (hk, G, L, 1).
        out_dot = np.einsum("...e,...e->...", dout_heads, out5[heads])[..., None]
        # The forward's causal tiles serve only if dO is finite too: a NaN there reaches every key in torch.
        causal = bool(causal_heads[heads].all()) and all_finite(dout_heads)
        for rows, keys in query_tiles(num_queries, num_keys, q.itemsize, causal):
            if options is not None and causal:  # the forward's band of keys
                keys = options.key_range(rows, num_keys)
            probs, dout_rows = weights5[heads][..., rows, keys], dout_heads[..., rows, :]
            keep_scale = None if keep5 is None else dropout_factor(keep5[heads][..., rows, keys], dropout_p, q.dtype)
            dropped = probs if keep_scale is None else probs * keep_scale
            # A k/v head's dK and dV sum over its G query heads (axis 1 of a tile) and over the tiles.
            dv[heads][..., keys, :] += (dropped.swapaxes(-1, -2) @ dout_rows).sum(axis=1)
            d_probs = dout_rows @ v_t[..., keys]
            if keep_scale is not None:
                d_probs *= keep_scale
            # dS = P * (dP - rowsum(dO * O)), in place in the dP buffer.
            d_scores = np.multiply(probs, np.subtract(d_probs, out_dot[..., rows, :], out=d_probs), out=d_probs)
            if tanh5 is not None:  # dS from dS_mod: the soft-cap's derivative 1 - tanh(S / c)**2
                mod = ScoreModCache(tanh5[heads][..., rows, keys], d_scores.shape, q.dtype)
                d_scores = score_mod_backward(d_scores, mod)
            np.matmul(d_scores, k_heads[..., keys, :], out=dq5[heads][..., rows, :])
            dk[heads][..., keys, :] += (d_scores.swapaxes(-1, -2) @ q_heads[..., rows, :]).sum(axis=1)
        # The scale of dQ = scale * dS K and dK = scale * dS^T Q, applied once to the (.., E) results.
        dq5[heads] *= scale
        dk[heads] *= scale

    for_each_chunk(attend_backward, chunks, weights4.size)

    if q.ndim == 2:
        dq, dk, dv = dq[0], dk[0], dv[0]
    grads = unbroadcast(dq, q.shape), unbroadcast(dk, k.shape), unbroadcast(dv, v.shape)
    if sink_weights is None:
        return grads
    return (*grads, sink_grad(sink_weights, np.einsum("...e,...e->...", dout4, out4)[..., None]))

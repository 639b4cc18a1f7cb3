"""Tiled ("flash") attention: the same function as the naive pair, in linear memory.

The dense pair materialises the (L, T) scores, weights and their gradients.
This pair walks over tiles of query rows by keys (``block_size``) and never
holds more than one (rows, keys) tile of them. For one head, with
a row tile ``i`` and the key tiles ``j`` arriving one after another::

    S_ij = scale * Q_i K_j^T + mask_ij                      scores of one tile
    m    = max(m, rowmax(S_ij))                             running row maximum
    l    = l * exp(m_old - m) + rowsum(exp(S_ij - m))       running normaliser
    acc  = acc * exp(m_old - m) + (exp(S_ij - m) * Z_ij) V_j
    O_i  = acc / l                                          after the last key tile

(``Z`` is the dropout keep-mask scaled by 1 / (1 - p).) When Cauchy-Schwarz bounds
every score within ``EXP_SAFE_BOUND`` (as in the naive pair), ``m`` stays 0 and
nothing is rescaled. Each k/v head (with its query heads) runs on a core of its own
when the call is large enough, as in the naive pair. The forward keeps only
``O`` and each row's log-sum-exp ``lse_i = m + log(l)``, as its two terms; the
backward recomputes each tile's probabilities as ``exp(S_ij - m) * exp(-log(l))``.
See docs/derivations.md, section "Tiled attention: online softmax forward and
tiled backward".
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .._args import attention_scores_shape, check_attention_options, check_qkv, check_score_options
from ..functional.dropout import draw_dropout_seed, position_dropout_factor
from ..functional.score_mods import score_mod_backward, sink_grad
from ..validation import check_cache, check_dout, unbroadcast
from . import schedule
from .dense import apply_mask, causal_mask, merge_groups, scores_bound, split_groups, with_head_axis
from .score_options import ScoreOptions
from .softmax import EXP_SAFE_BOUND


class FlashAttentionCache(NamedTuple):
    """What the tiled backward needs: the inputs, the output and each query row's log-sum-exp.

    The log-sum-exp ``lse = row_max + log_row_sum`` is kept as its two terms,
    each of shape (..., Hq, L) (with a head axis of 1 for unbatched input), so
    that ``P = exp(scores - row_max) * exp(-log_row_sum)`` stays exact when the
    scores dwarf ``log_row_sum`` (float64 scores of 1e300: ``m + log 2`` rounds
    to ``m``). A fully masked row has ``row_max = 0`` and ``log_row_sum = +inf``,
    so that P = 0. ``dropout_seed`` regenerates every tile's dropout mask (None
    without dropout). ``block_size`` is the tile shape, (query rows, keys).
    Nothing here is L x T.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    attn_mask: np.ndarray | None
    out: np.ndarray
    row_max: np.ndarray
    log_row_sum: np.ndarray
    dropout_seed: np.uint64 | None
    dropout_p: float
    is_causal: bool
    scale: float
    block_size: tuple[int, int]
    softcap: float | None = None
    alibi_slopes: np.ndarray | None = None
    window: tuple | None = None
    sinks: np.ndarray | None = None
    query_offset: int = 0


def _option_tile_scores(
    options: ScoreOptions, q_rows: np.ndarray, k: np.ndarray, mask: np.ndarray | None, query_heads: tuple,
    num_heads: int, rows: slice, cols: slice,
) -> tuple[np.ndarray, Any]:
    """The tile's scores ``mod(scale Q_i K_j^T) + M_ij`` and mod's cache (None without soft-cap or ALiBi).

    Without options, the plain :func:`_tile_scores` (causal tiles top-left, as before).
    """
    if not options.given:
        return _tile_scores(q_rows, k, _tile_mask(mask, options.is_causal, rows, cols), num_heads, cols), None
    scores = merge_groups(q_rows @ k[..., cols, :].swapaxes(-1, -2), num_heads)
    return options.modify(scores, query_heads[-1], rows, cols, _tile_mask(mask, False, rows, cols))


def _tile_mask(
    attn_mask: np.ndarray | None, is_causal: bool, rows: slice, cols: slice
) -> np.ndarray | None:
    """The slice of the mask (broadcast to the scores' full shape by ``_head_views``) that covers tile (rows, cols)."""
    if is_causal:
        if cols.stop <= rows.start + 1:  # wholly on or below the diagonal: nothing to mask
            return None
        # Query rows.start + a sees key cols.start + b iff b <= a + (rows.start - cols.start).
        return causal_mask(rows.stop - rows.start, cols.stop - cols.start, rows.start - cols.start)
    if attn_mask is None:
        return None
    return attn_mask[..., rows, cols]


def _tile_scores(
    q_rows: np.ndarray, k: np.ndarray, mask: np.ndarray | None, num_heads: int, cols: slice
) -> np.ndarray:
    """``scale * Q_i K_j^T + mask_ij`` for one tile, shape (..., Hq, rows, cols).

    ``q_rows`` are the row tile's queries, already scaled and grouped as
    (..., Hkv, G * rows, E) by :func:`split_groups`.
    """
    scores = merge_groups(q_rows @ k[..., cols, :].swapaxes(-1, -2), num_heads)
    return apply_mask(scores, mask)


class _HeadViews(NamedTuple):
    """The inputs as full-batch views, so that a chunk of heads indexes them all alike.

    A chunk is an index into (*batch, Hkv): its k/v heads, and through
    :meth:`query_heads` the G query heads of each.
    """

    q: np.ndarray  # (*batch, Hq, L, E)
    k: np.ndarray  # (*batch, Hkv, T, E)
    v: np.ndarray  # (*batch, Hkv, T, Ev)
    mask: np.ndarray | None  # (*batch, Hq, L, T)
    positions: np.ndarray  # (*batch, Hq): each head's place in the flattened (..., Hq), for the dropout mask

    def query_heads(self, chunk: tuple) -> tuple:
        """The chunk's index into (*batch, Hq): the G query heads of each of its k/v heads."""
        num_kv_heads = self.k.shape[-3]
        group = self.q.shape[-3] // max(1, num_kv_heads)  # 0 heads: an empty call
        kv_heads = range(num_kv_heads)[chunk[-1]]
        return (*chunk[:-1], slice(kv_heads.start * group, kv_heads.stop * group))

    def for_each_chunk(self, task: Callable[[tuple], None]) -> None:
        """``task(chunk)`` for one k/v head of one batch entry at a time, on the cores, when the call is large.

        A small call runs all heads as one chunk: NumPy's per-call cost is paid once for them all.
        """
        *batch, num_kv_heads = self.k.shape[:-2]
        num_scores = self.positions.size * self.q.shape[-2] * self.k.shape[-2]
        if num_scores >= schedule.PARALLEL_MIN_SCORES:
            chunks = [(*index, slice(head, head + 1)) for index in np.ndindex(*batch) for head in range(num_kv_heads)]
        else:
            chunks = [(slice(None),) * (len(batch) + 1)]
        schedule.for_each_chunk(task, chunks, num_scores)


def _head_views(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, attn_mask: np.ndarray | None, scores_shape4: tuple
) -> _HeadViews:
    """q, k, v (with a head axis of 1 when unbatched) and the mask, broadcast to the full batch of the scores."""
    *heads, _, _ = scores_shape4
    batch = tuple(heads[:-1])
    q4 = np.broadcast_to(with_head_axis(q), (*heads, *q.shape[-2:]))
    k4, v4 = (np.broadcast_to(x, (*batch, *x.shape[-3:])) for x in (with_head_axis(k), with_head_axis(v)))
    mask4 = None if attn_mask is None else np.broadcast_to(attn_mask, scores_shape4)
    return _HeadViews(q4, k4, v4, mask4, np.arange(math.prod(heads)).reshape(heads))


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
    """Scaled dot-product attention in tiles with an online softmax; memory linear in L and S.

    Same arguments, semantics and output as :func:`attention_forward` (see
    there), plus ``block_size``: an int B makes tiles of B queries by B keys,
    a pair (rows, keys) tiles of that shape. Any positive sizes give the same
    result up to rounding; None picks :func:`~numpy_attention.kernels.schedule.default_block_size` (512 x 256
    in float32 and 256 x 128 in float64 for E = 64), whose tile fits in a
    per-core L2 cache (capped by :func:`~numpy_attention.kernels.schedule.tile_limits`).

    For each row tile i, the key tiles j update a running row maximum ``m``,
    normaliser ``l`` and unnormalised output ``acc``::

        m_new = max(m, rowmax(S_ij));  c = exp(m - m_new)
        l     = c * l + rowsum(exp(S_ij - m_new))
        acc   = c * acc + (exp(S_ij - m_new) * Z_ij) V_j
        O_i   = acc / l,   lse_i = m + log(l)  (kept as m and log(l))

    With ``is_causal``, key tiles wholly above the diagonal are skipped (unless
    they hold a NaN or inf, which must spread as in torch). The
    dropout mask of each tile is derived from one seed drawn from ``rng`` and
    the position of each entry, so the backward regenerates it; it is the same
    for every ``block_size`` (but not the mask the naive pair draws from the
    same ``rng``).

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        A query row whose keys are all masked gives 0.
    cache : FlashAttentionCache
        The inputs, ``out`` and each query row's log-sum-exp: no L x T array.

    See docs/derivations.md, section "Tiled attention: online softmax forward and tiled backward".
    """
    q, k, v = check_qkv(q, k, v)
    scores_shape = attention_scores_shape(q, k, v)
    attn_mask, dropout_p, is_causal, scale = check_attention_options(
        attn_mask, dropout_p, is_causal, scale, scores_shape, q.dtype, q.shape[-1]
    )
    options = ScoreOptions(*check_score_options(q, softcap, alibi_slopes, window, sinks, query_offset), is_causal)
    block_size = schedule.block_shape(block_size, q.dtype, q.shape[-1])
    block_rows, block_keys = block_size
    dropout_seed = draw_dropout_seed(dropout_p, rng)

    scores_shape4 = scores_shape if q.ndim > 2 else (1, *scores_shape)
    *heads, num_queries, num_keys = scores_shape4
    views = _head_views(q, k, v, attn_mask, scores_shape4)
    out = np.zeros((*heads, num_queries, v.shape[-1]), dtype=q.dtype)
    final_max = np.empty((*heads, num_queries), dtype=q.dtype)
    log_row_sum = np.empty((*heads, num_queries), dtype=q.dtype)
    # Scores within EXP_SAFE_BOUND (masks of 0 and -inf keep them there) need no running
    # maximum: m stays 0, nothing is rescaled, and each tile saves a max and a subtraction.
    # Soft-capping bounds every score by c; ALiBi's bias grows with the distance (no bound); a sink
    # is one more term of the row sum, so it must be within the bound too.
    bounded = (attn_mask is None or attn_mask.dtype == np.bool_) and options.alibi_slopes is None and (
        options.sinks is None or bool(np.abs(options.sinks).max(initial=0.0) <= EXP_SAFE_BOUND[q.dtype])
    ) and ((options.softcap is not None and options.softcap <= EXP_SAFE_BOUND[q.dtype])
           or abs(scale) * scores_bound(views.q, views.k) <= EXP_SAFE_BOUND[q.dtype])

    @np.errstate(invalid="ignore")  # NaN from inf - inf spreads as in torch (threads: set here)
    def attend(chunk: tuple) -> None:
        # Heads are independent: each chunk's online softmax runs on its own core.
        query_heads = views.query_heads(chunk)
        q_heads, k_heads, v_heads = views.q[query_heads], views.k[chunk], views.v[chunk]
        mask_heads = None if views.mask is None else views.mask[query_heads]
        out_heads, max_heads, log_sum_heads = out[query_heads], final_max[query_heads], log_row_sum[query_heads]
        chunk_heads, chunk_kv_heads = q_heads.shape[-3], k_heads.shape[-3]
        finite_keys = schedule.finite_tiles((k_heads, v_heads), num_keys, block_keys)
        for rows in schedule.tiles(num_queries, block_rows):
            q_rows = split_groups(q_heads[..., rows, :] * scale, chunk_kv_heads)
            finite_rows = bool(np.isfinite(q_rows).all())
            row_max = np.full((*q_rows.shape[:-3], chunk_heads, rows.stop - rows.start, 1),
                              0.0 if bounded else -np.inf, dtype=q.dtype)
            row_sum = np.zeros_like(row_max)
            if options.sinks is not None:  # the sink is the first term of m and l: m = sink, l = 1 (or m = 0)
                sink = options.sinks[query_heads[-1]][:, None, None]
                row_sum = row_sum + (np.exp(sink) if bounded else 1.0)
                row_max = row_max if bounded else np.broadcast_to(sink, row_max.shape).astype(q.dtype)
            acc = np.zeros((*row_max.shape[:-1], v.shape[-1]), dtype=q.dtype)
            band = options.band(rows) if options.given else None
            for cols in schedule.key_tiles(rows, num_keys, block_keys, is_causal, finite_rows, finite_keys, band):
                scores, _ = _option_tile_scores(options, q_rows, k_heads, mask_heads, query_heads, chunk_heads, rows,
                                                cols)
                if bounded:
                    correction = 1.0
                    probs = np.exp(scores, out=scores)
                else:
                    new_max = np.maximum(row_max, scores.max(axis=-1, keepdims=True))
                    # A row that has seen only masked keys so far has max -inf; shift it by 0 (exp(-inf) = 0).
                    shift = np.where(np.isneginf(new_max), 0.0, new_max).astype(q.dtype, copy=False)
                    correction = np.exp(row_max - shift)
                    probs = np.exp(np.subtract(scores, shift, out=scores), out=scores)  # in place: one tile buffer
                    row_max = new_max
                row_sum = correction * row_sum + np.einsum("...j->...", probs)[..., None]
                factor = None if dropout_seed is None else position_dropout_factor(
                    dropout_seed, dropout_p, scores_shape4, rows, cols, q.dtype, views.positions[query_heads]
                )
                dropped = probs if factor is None else probs * factor
                contribution = split_groups(dropped, chunk_kv_heads) @ v_heads[..., cols, :]
                acc = correction * acc + merge_groups(contribution, chunk_heads)
            seen = row_sum != 0  # False only for a row whose keys are all masked (a NaN row stays NaN)
            # A fully masked row keeps A = 0 V: 0, or NaN where a value is NaN, as the dense pair's 0 @ V.
            np.divide(acc, row_sum, out=out_heads[..., rows, :], where=seen)
            np.copyto(out_heads[..., rows, :], acc, where=~seen)
            # A fully masked row keeps max 0 and log-sum +inf: the backward's 1 / l is exp(-inf) = 0.
            max_heads[..., rows] = np.where(seen, row_max, 0.0)[..., 0]
            log_sum_heads[..., rows] = np.log(row_sum, out=np.full_like(row_sum, np.inf), where=seen)[..., 0]

    views.for_each_chunk(attend)

    if q.ndim == 2:
        out = out[0]
    cache = FlashAttentionCache(  # the cache's own copy of O: a caller may add to the returned output in place
        q, k, v, attn_mask, out.copy(), final_max, log_row_sum, dropout_seed, dropout_p, is_causal, scale, block_size,
        *options[:5],
    )
    return out, cache


@np.errstate(invalid="ignore")
def flash_attention_backward(
    dout: np.ndarray, cache: FlashAttentionCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of tiled attention with respect to q, k and v, one tile at a time.

    With ``D = rowsum(dO * O)`` per query row (it equals ``rowsum(dP * P)`` of
    the naive backward, dropout included), each tile (i, j) recomputes its
    probabilities from the stored ``m_i`` and ``log(l_i)`` and adds its share::

        P_ij  = exp(S_ij - m_i) / l_i              (rows, keys)
        dV_j += (P_ij * Z_ij)^T dO_i
        dP_ij = (dO_i V_j^T) * Z_ij
        dS_ij = P_ij * (dP_ij - D_i)
        dQ_i += scale * dS_ij K_j
        dK_j += scale * dS_ij^T Q_i

    The tile holds only ``E_ij = exp(S_ij - m_i)``: the row factor ``1 / l_i``
    moves onto the (rows, E) factors, ``dV_j += (E_ij * Z_ij)^T (dO_i / l_i)``,
    ``dK_j += (E_ij * (dP_ij - D_i))^T (scale * Q_i / l_i)`` and dQ_i is
    divided by ``l_i`` once per row block, which saves one pass over each tile.
    Fully masked rows have ``log(l) = +inf``, so 1 / l = 0 and their gradients are 0. Grouped
    heads and broadcast batch dimensions sum as in :func:`attention_backward`.
    No L x T array is formed.

    See docs/derivations.md, section "Tiled attention: online softmax forward and tiled backward".
    """
    check_cache(cache, FlashAttentionCache, "flash_attention_forward")
    q, k, v, attn_mask, out, row_max, log_row_sum, dropout_seed, dropout_p, is_causal, scale, block_size = cache[:12]
    options = ScoreOptions(*cache[12:], is_causal)
    dout = check_dout(dout, out.shape, q.dtype)
    out4, dout4 = with_head_axis(out), with_head_axis(dout)
    *heads, num_queries, _ = out4.shape
    num_keys = k.shape[-2]
    scores_shape4 = (*heads, num_queries, num_keys)
    views = _head_views(q, k, v, attn_mask, scores_shape4)
    dq = np.empty(views.q.shape, dtype=q.dtype)
    dk = np.zeros((*views.k.shape[:-1], k.shape[-1]), dtype=q.dtype)
    dv = np.zeros((*views.v.shape[:-1], v.shape[-1]), dtype=q.dtype)
    block_rows, block_keys = block_size
    shifted = bool(row_max.any())  # all 0 when the forward's scores were bounded: nothing to subtract

    @np.errstate(invalid="ignore")  # NaN from inf - inf spreads as in torch (threads: set here)
    def attend_backward(chunk: tuple) -> None:
        query_heads = views.query_heads(chunk)
        q_heads, k_heads, v_heads = views.q[query_heads], views.k[chunk], views.v[chunk]
        out_heads, dout_heads = out4[query_heads], dout4[query_heads]
        mask_heads = None if views.mask is None else views.mask[query_heads]
        dk_heads, dv_heads, dq_heads = dk[chunk], dv[chunk], dq[query_heads]
        max_heads, log_sum_heads = row_max[query_heads], log_row_sum[query_heads]
        chunk_heads, chunk_kv_heads = q_heads.shape[-3], k_heads.shape[-3]
        finite_keys = schedule.finite_tiles((k_heads, v_heads), num_keys, block_keys)
        for rows in schedule.tiles(num_queries, block_rows):
            q_rows = split_groups(q_heads[..., rows, :] * scale, chunk_kv_heads)
            dout_rows = dout_heads[..., rows, :]
            dout_groups = split_groups(dout_rows, chunk_kv_heads)
            delta = np.sum(dout_rows * out_heads[..., rows, :], axis=-1, keepdims=True)  # D_i = rowsum(dO_i * O_i)
            finite_rows = bool(
                np.isfinite(q_rows).all() and np.isfinite(dout_rows).all() and np.isfinite(delta).all()
            )
            max_rows = max_heads[..., rows, None]
            inv_sum_rows = np.exp(-log_sum_heads[..., rows, None])  # 1 / l: 0 for a fully masked row
            dout_over_sum = split_groups(dout_rows * inv_sum_rows, chunk_kv_heads)
            q_over_sum = q_rows * split_groups(inv_sum_rows, chunk_kv_heads)  # scale * Q_i / l_i
            dq_rows = np.zeros((*dout_rows.shape[:-1], q.shape[-1]), dtype=q.dtype)
            band = options.band(rows) if options.given else None
            for cols in schedule.key_tiles(rows, num_keys, block_keys, is_causal, finite_rows, finite_keys, band):
                scores, mod_cache = _option_tile_scores(options, q_rows, k_heads, mask_heads, query_heads,
                                                        chunk_heads, rows, cols)
                # E = exp(S - m) = l * P, in place; 1 / l is applied to the (rows, E) factors instead.
                if shifted:
                    np.subtract(scores, max_rows, out=scores)
                unnormalised = np.exp(scores, out=scores)
                factor = None if dropout_seed is None else position_dropout_factor(
                    dropout_seed, dropout_p, scores_shape4, rows, cols, q.dtype, views.positions[query_heads]
                )
                dropped = unnormalised if factor is None else unnormalised * factor
                dv_heads[..., cols, :] += split_groups(dropped, chunk_kv_heads).swapaxes(-1, -2) @ dout_over_sum
                d_dropped = merge_groups(dout_groups @ v_heads[..., cols, :].swapaxes(-1, -2), chunk_heads)
                d_probs = d_dropped if factor is None else d_dropped * factor
                np.subtract(d_probs, delta, out=d_probs)  # l * dS = E * (dP - D) in d_probs' buffer: no new tile
                d_scores = np.multiply(unnormalised, d_probs, out=d_probs)
                if mod_cache is not None:  # l * dS from l * dS_mod: score_mod's backward is linear in it
                    d_scores = score_mod_backward(d_scores, mod_cache)
                d_scores = split_groups(d_scores, chunk_kv_heads)
                dq_rows += merge_groups(d_scores @ k_heads[..., cols, :], chunk_heads)
                dk_heads[..., cols, :] += d_scores.swapaxes(-1, -2) @ q_over_sum
            dq_heads[..., rows, :] = dq_rows * (scale * inv_sum_rows)

    views.for_each_chunk(attend_backward)

    grads = unbroadcast(dq, q.shape), unbroadcast(dk, k.shape), unbroadcast(dv, v.shape)
    if options.sinks is None:
        return grads
    # dsinks = -sum(P_sink * D), P_sink = exp(sink - m) / l per query row.
    delta = np.sum(dout4 * out4, axis=-1, keepdims=True)
    sink_weight = np.exp(options.sinks[:, None, None] - row_max[..., None] - log_row_sum[..., None])
    return (*grads, sink_grad(sink_weight, delta))

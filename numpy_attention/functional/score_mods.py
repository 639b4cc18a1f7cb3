"""The options of today's attention, written once for every implementation.

Each acts on a tile of scores given the positions of the tile's queries and
keys, so that the dense textbook pair (one tile: every query, every key) and
the tiled kernels (many small tiles) call the same lines:

* :func:`score_mod_forward` / :func:`score_mod_backward`: soft-capping
  ``s = c tanh(s / c)`` (Gemma 2) then ALiBi ``s -= slope_h |i - j|``, and the
  gradient of the raw scores from that of the modified ones (FlexAttention's
  ``score_mod``, with its derivative written by hand);
* :func:`visible`: the causal and sliding-window masks as one predicate on
  positions (:func:`key_band` gives each query's band of visible keys);
* :func:`softmax_with_sink` and :func:`sink_grad`: a softmax with one extra
  logit per head in the denominator (gpt-oss's attention sinks) and its
  gradient ``dsinks_h = -sum(P_sink * D)``; the pair
  :func:`softmax_with_sink_forward` / :func:`softmax_with_sink_backward` checks it.

Scores S are (..., Hq, l, t): heads on axis -3, the tile's l query rows and t
keys (L and T for the whole matrix); P are the weights and D = rowsum(dO * O),
as in docs/derivations.md's Conventions. Query positions already include the
attention's ``query_offset``.

See docs/derivations.md, sections "Soft-capping", "ALiBi", "Sliding window and
causal masks as a predicate" and "Attention sinks".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import (
    as_float_array,
    as_head_vector,
    as_positions,
    check_bool,
    check_cache,
    check_dout,
    check_softcap,
    check_window,
)

# A key position bound that stands for "unbounded": far beyond any sequence, far from int64's overflow.
UNBOUNDED = 2**62


class ScoreModCache(NamedTuple):
    """What the score_mod backward needs: tanh(S / c) when soft-capped (else None), and the scores' shape."""

    tanh_scaled: np.ndarray | None
    shape: tuple
    dtype: np.dtype


class SoftmaxWithSinkCache(NamedTuple):
    """What the sink softmax backward needs: the weights over the keys and the sink's weight per row."""

    P: np.ndarray
    P_sink: np.ndarray


def as_scores(S: np.ndarray, name: str, *, heads: bool) -> np.ndarray:
    """A float (..., l, t) array of scores; (..., Hq, l, t) when ``heads`` (a per-head option is given)."""
    S = as_float_array(S, name)
    if S.ndim < (3 if heads else 2):
        layout = "(..., Hq, l, t) with the query heads on axis -3" if heads else "(..., l, t)"
        raise ValueError(f"{name} must be {layout}; got shape {S.shape}")
    return S


def alibi_bias(query_pos: np.ndarray, key_pos: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """ALiBi's additive bias ``-slope_h |i - j|`` (Hq, l, t), in the slopes' dtype."""
    distance = np.abs(query_pos[:, None] - key_pos[None, :]).astype(slopes.dtype)  # (l, t)
    return -slopes[:, None, None] * distance  # (Hq, l, t)


def score_mod_forward(
    S: np.ndarray, query_pos: np.ndarray, key_pos: np.ndarray, *, softcap: float | None = None,
    alibi_slopes: np.ndarray | None = None,
) -> tuple[np.ndarray, ScoreModCache]:
    """Soft-cap, then ALiBi, on a tile of scaled scores ``s = scale * q.k`` (before any mask).

    Parameters
    ----------
    S : ndarray (..., Hq, l, t) (or (..., l, t) without ``alibi_slopes``)
    query_pos : integer ndarray (l,)
        The tile's query positions, ``query_offset`` included.
    key_pos : integer ndarray (t,)
        The tile's key positions.
    softcap : float, optional
        c > 0: ``s = c * tanh(s / c)``, every score squeezed into (-c, c).
    alibi_slopes : ndarray (Hq,), optional
        ``s -= slope_h * |i - j|``: a per-head linear penalty on distance (constants, no gradient).

    Returns
    -------
    S_mod : ndarray, the shape and dtype of ``S`` (a new array)
    cache : ScoreModCache
    """
    S = as_scores(S, "S", heads=alibi_slopes is not None)
    query_pos = as_positions(query_pos, "query_pos", S.shape[-2])
    key_pos = as_positions(key_pos, "key_pos", S.shape[-1])
    softcap = check_softcap(softcap)
    tanh_scaled = None
    if softcap is None:
        S_mod = S.copy()
    else:
        tanh_scaled = np.tanh(S / softcap)
        S_mod = softcap * tanh_scaled
    if alibi_slopes is not None:
        slopes = as_head_vector(alibi_slopes, "alibi_slopes", S.shape[-3], S.dtype, cast=True)
        S_mod += alibi_bias(query_pos, key_pos, slopes)
    return S_mod, ScoreModCache(tanh_scaled, S.shape, S.dtype)


def score_mod_backward(dS_mod: np.ndarray, cache: ScoreModCache) -> np.ndarray:
    """Gradient of the raw scores from that of the modified ones.

    ALiBi adds a constant, which passes the gradient through; soft-capping
    ``c tanh(s / c)`` has the derivative ``1 - tanh(s / c)**2``::

        dS = dS_mod * (1 - tanh(S / c)**2)      (..., Hq, l, t)

    (``dS = dS_mod``, copied, without soft-capping.)

    See docs/derivations.md, section "Soft-capping".
    """
    check_cache(cache, ScoreModCache, "score_mod_forward")
    dS_mod = check_dout(dS_mod, cache.shape, cache.dtype, name="dS_mod")
    if cache.tanh_scaled is None:
        return dS_mod.copy()
    dS = dS_mod * (1 - cache.tanh_scaled * cache.tanh_scaled)
    return dS


def key_band(
    query_pos: np.ndarray, *, is_causal: bool = False, window: tuple[int | None, int | None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The band of key positions each query may see: ``first[i] <= j <= last[i]`` (each (l,), int64).

    ``window=(left, right)`` gives ``i - left <= j <= i + right``; ``is_causal``
    caps ``last`` at ``i``. An unbounded side is +-``UNBOUNDED``. A tiled kernel
    skips every key tile outside the band of all its queries.
    """
    query_pos = as_positions(query_pos, "query_pos")
    is_causal = check_bool(is_causal, "is_causal")
    left, right = check_window(window) or (None, None)
    first = query_pos - left if left is not None else np.full_like(query_pos, -UNBOUNDED)
    last = query_pos + right if right is not None else np.full_like(query_pos, UNBOUNDED)
    if is_causal:
        last = np.minimum(last, query_pos)
    return first, last


def visible(
    query_pos: np.ndarray, key_pos: np.ndarray, *, is_causal: bool = False,
    window: tuple[int | None, int | None] | None = None,
) -> np.ndarray:
    """Which keys each query may attend, bool (l, t): True iff ``first[i] <= key_pos[j] <= last[i]``.

    That is: (not ``is_causal`` or j <= i) and, with ``window=(left, right)``,
    i - left <= j <= i + right (a None side unbounded), i and j being the
    positions. The caller ANDs it with a boolean ``attn_mask``.
    """
    key_pos = as_positions(key_pos, "key_pos")
    first, last = key_band(query_pos, is_causal=is_causal, window=window)
    return (first[:, None] <= key_pos[None, :]) & (key_pos[None, :] <= last[:, None])


def softmax_with_sink(S: np.ndarray, sinks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over the keys plus one sink logit per head; the sink's column is dropped after it.

    ``S`` (..., Hq, l, t), masked entries -inf; ``sinks`` (Hq,), finite.
    Returns ``P`` (..., Hq, l, t), whose rows sum to ``1 - P_sink``, and
    ``P_sink`` (..., Hq, l, 1). A row with every key masked gives ``P`` 0
    and ``P_sink`` 1 (never NaN): the sink keeps the denominator positive.
    """
    sink = sinks[:, None, None]  # (Hq, 1, 1)
    row_max = np.maximum(S.max(axis=-1, keepdims=True, initial=-np.inf), sink)  # (..., Hq, l, 1), finite
    exp_S = np.exp(S - row_max)  # (..., Hq, l, t)
    exp_sink = np.exp(sink - row_max)  # (..., Hq, l, 1)
    denominator = exp_S.sum(axis=-1, keepdims=True) + exp_sink  # (..., Hq, l, 1), >= 1
    return exp_S / denominator, exp_sink / denominator


def sink_grad(P_sink: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``dsinks_h = -sum over batch and rows of P_sink * D`` (Hq,), with ``D = rowsum(dO * O)`` (..., Hq, l, 1).

    (``D = rowsum(dP * P)`` for the softmax alone; they are equal in attention.)
    """
    contribution = -P_sink * D  # (..., Hq, l, 1)
    head_axis = contribution.ndim - 3
    return contribution.sum(axis=tuple(axis for axis in range(contribution.ndim) if axis != head_axis))


def softmax_with_sink_forward(S: np.ndarray, sinks: np.ndarray) -> tuple[np.ndarray, SoftmaxWithSinkCache]:
    """:func:`softmax_with_sink` as a pair with its backward: ``P`` (..., Hq, l, t) and the cache.

    Parameters
    ----------
    S : ndarray (..., Hq, l, t), masked entries -inf
    sinks : ndarray (Hq,), finite, the dtype of ``S``

    Returns
    -------
    P : ndarray (..., Hq, l, t)
    cache : SoftmaxWithSinkCache
    """
    S = as_scores(S, "S", heads=True)
    sinks = as_head_vector(sinks, "sinks", S.shape[-3], S.dtype)
    P, P_sink = softmax_with_sink(S, sinks)
    return P.copy(), SoftmaxWithSinkCache(P, P_sink)


def softmax_with_sink_backward(dP: np.ndarray, cache: SoftmaxWithSinkCache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the sink softmax with respect to the scores and the sinks.

    The logits are the scores and the sink; the sink's output is dropped, so its
    upstream gradient is 0 and the softmax backward over the row gives, with
    ``D = rowsum(dP * P)``::

        dS = P * (dP - D)                            (..., Hq, l, t)
        dsinks = -sum(P_sink * D, batch and rows)    (Hq,)

    See docs/derivations.md, section "Attention sinks".
    """
    check_cache(cache, SoftmaxWithSinkCache, "softmax_with_sink_forward")
    P, P_sink = cache
    dP = check_dout(dP, P.shape, P.dtype, name="dP")
    D = np.sum(dP * P, axis=-1, keepdims=True)  # (..., Hq, l, 1)
    dS = P * (dP - D)
    dsinks = sink_grad(P_sink, D)
    return dS, dsinks

"""Scaled dot-product attention, forward and backward (the naive pair: it materialises L x S).

Semantics follow ``torch.nn.functional.scaled_dot_product_attention``. With
``Q`` (L, E), ``K`` (S, E), ``V`` (S, Ev) for one head::

    scores  = scale * Q K^T + mask          (L, S)
    weights = softmax(scores)               (L, S)   rows sum to 1 (or are 0 if fully masked)
    dropped = weights * keep / (1 - p)      (L, S)   keep ~ Bernoulli(1 - p)
    out     = dropped V                     (L, Ev)

See docs/derivations.md, section "Scaled dot-product attention".
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._validation import (
    as_float_array,
    as_generator,
    as_mask,
    broadcast_batch,
    check_bool,
    check_cache,
    check_dout,
    check_probability,
    check_real,
    same_dtype,
    unbroadcast,
)
from .softmax import softmax, softmax_grad


class AttentionCache(NamedTuple):
    """What the attention backward needs.

    ``weights`` are the probabilities before dropout, shape (..., Hq, L, S);
    ``dropout_mask`` is the boolean keep-mask of the same shape, or None.
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    weights: np.ndarray
    dropout_mask: np.ndarray | None
    dropout_p: float
    scale: float


# Grouped-query attention: query head h uses k/v head h // G, where G = Hq / Hkv
# (torch's repeat_interleave). Reshaping (..., Hq, L, X) to (..., Hkv, G*L, X)
# stacks the G query heads of a group as extra rows of one k/v head, so a single
# batched matmul serves the whole group and dK, dV sum over the group for free.


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


def _with_head_axis(x: np.ndarray) -> np.ndarray:
    """Unbatched (L, E) input is one head: view it as (1, L, E)."""
    return x[None] if x.ndim == 2 else x


def check_qkv(q: Any, k: Any, v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate q (..., Hq, L, E), k (..., Hkv, S, E), v (..., Hkv, S, Ev)."""
    q, k, v = as_float_array(q, "q"), as_float_array(k, "k"), as_float_array(v, "v")
    same_dtype([q, k, v], ["q", "k", "v"])
    if q.ndim < 2 or not q.ndim == k.ndim == v.ndim:
        raise ValueError(
            "q, k, v must have the same number of dimensions, at least 2 "
            f"((L, E) unbatched or (..., H, L, E)); got shapes {q.shape}, {k.shape}, {v.shape}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share the embedding size E (last dimension); got q {q.shape} and k {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must share the key length S (dimension -2); got k {k.shape} and v {v.shape}"
        )
    if q.ndim >= 3:
        num_heads, num_kv_heads = q.shape[-3], k.shape[-3]
        if v.shape[-3] != num_kv_heads:
            raise ValueError(
                f"k and v must have the same number of heads (dimension -3); got k {k.shape} and v {v.shape}"
            )
        if num_heads != num_kv_heads and (num_heads == 0 or num_kv_heads == 0 or num_heads % num_kv_heads):
            raise ValueError(
                f"the number of query heads Hq must be a positive multiple of the number of key/value heads Hkv; "
                f"got Hq = {num_heads} (q {q.shape}) and Hkv = {num_kv_heads} (k {k.shape})"
            )
        broadcast_batch([q.shape[:-3], k.shape[:-3], v.shape[:-3]], ["q", "k", "v"])
    return q, k, v


def attention_scores_shape(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple:
    """The shape that masks broadcast to: (..., Hq, L, S), or (L, S) for unbatched input."""
    if q.ndim == 2:
        return (q.shape[0], k.shape[0])
    batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    return (*batch, q.shape[-3], q.shape[-2], k.shape[-2])


def check_attention_options(
    attn_mask: Any, dropout_p: Any, is_causal: Any, scale: Any, scores_shape: tuple, dtype: np.dtype
) -> tuple[np.ndarray | None, float, bool, float | None]:
    """Validate the options shared by the naive and the tiled attention."""
    is_causal = check_bool(is_causal, "is_causal")
    dropout_p = check_probability(dropout_p, "dropout_p")
    scale = check_real(scale, "scale", allow_none=True)
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                "attn_mask and is_causal=True cannot be combined (as in torch): "
                "pass a causal attn_mask, or is_causal=True alone"
            )
        attn_mask = as_mask(attn_mask, "attn_mask", scores_shape, dtype)
    return attn_mask, dropout_p, is_causal, scale


def causal_mask(num_queries: int, num_keys: int) -> np.ndarray:
    """Top-left causal mask (L, S): query i may attend to keys j <= i, as torch's ``is_causal``."""
    return np.tri(num_queries, num_keys, dtype=bool)


def apply_mask(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean mask: False -> -inf (True may attend). Float mask: added to the scores."""
    if mask is None:
        return scores
    if mask.dtype == np.bool_:
        # Added, not substituted, as torch does: a NaN score stays NaN even where it is masked.
        mask = np.where(mask, 0.0, -np.inf).astype(scores.dtype, copy=False)
    return scores + mask


def dropout_scale(dropout_mask: np.ndarray, dropout_p: float, dtype: np.dtype) -> np.ndarray:
    """The keep-mask as the factor that multiplies the weights: 1 / (1 - p) where kept, 0 where dropped."""
    return dropout_mask.astype(dtype) * np.asarray(1.0 / (1.0 - dropout_p), dtype=dtype)


def draw_dropout_mask(
    shape: tuple, dropout_p: float, rng: np.random.Generator | None
) -> np.ndarray | None:
    """Boolean keep-mask, each entry kept with probability 1 - p; None when p = 0."""
    if dropout_p == 0.0:
        return None
    return as_generator(rng).random(shape) >= dropout_p


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
    k : ndarray (..., Hkv, S, E); Hq must be a multiple of Hkv (grouped-query attention)
    v : ndarray (..., Hkv, S, Ev)
    attn_mask : ndarray broadcastable to (..., Hq, L, S), optional
        Boolean: True = may attend. Float: added to the scores (use -inf to block).
    dropout_p : float in [0, 1)
        Dropout on the attention probabilities, rescaled by 1 / (1 - p).
    is_causal : bool
        Top-left causal mask (query i sees keys j <= i). Not combinable with ``attn_mask``.
    scale : float, optional
        Defaults to 1 / sqrt(E).
    rng : numpy.random.Generator, optional
        Source of the dropout mask.

    Returns
    -------
    out : ndarray (..., Hq, L, Ev)
        A query row whose keys are all masked gives 0.
    cache : AttentionCache
    """
    q, k, v = check_qkv(q, k, v)
    scores_shape = attention_scores_shape(q, k, v)
    attn_mask, dropout_p, is_causal, scale = check_attention_options(
        attn_mask, dropout_p, is_causal, scale, scores_shape, q.dtype
    )
    if scale is None:
        # With E = 0 every score is an empty sum, 0 whatever the scale (torch: uniform weights).
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    if is_causal:
        attn_mask = causal_mask(q.shape[-2], k.shape[-2])

    q4, k4, v4 = _with_head_axis(q), _with_head_axis(k), _with_head_axis(v)
    num_heads, num_kv_heads = q4.shape[-3], k4.shape[-3]
    # Scaling Q (L x E) instead of the scores (L x S) is the same product, cheaper.
    scores = merge_groups(split_groups(q4 * scale, num_kv_heads) @ k4.swapaxes(-1, -2), num_heads)
    if q.ndim == 2:
        scores = scores[0]
    weights = softmax(apply_mask(scores, attn_mask), axis=-1)
    dropout_mask = draw_dropout_mask(weights.shape, dropout_p, rng)
    dropped = weights if dropout_mask is None else weights * dropout_scale(dropout_mask, dropout_p, q.dtype)
    out = merge_groups(split_groups(_with_head_axis(dropped), num_kv_heads) @ v4, num_heads)
    if q.ndim == 2:
        out = out[0]
    cache = AttentionCache(q, k, v, weights, dropout_mask, dropout_p, scale)
    return out, cache


def attention_output_shape(cache: AttentionCache) -> tuple:
    """The forward output's shape: the batch of ``weights @ v``, then (Hq, L, Ev)."""
    weights, v = cache.weights, cache.v
    if weights.ndim == 2:
        return (weights.shape[0], v.shape[-1])
    batch = np.broadcast_shapes(weights.shape[:-3], v.shape[:-3])
    return (*batch, *weights.shape[-3:-1], v.shape[-1])


def attention_backward(
    dout: np.ndarray, cache: AttentionCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of scaled dot-product attention with respect to q, k and v.

    Per head, with P the weights, M the dropout keep-mask and D = P * M / (1 - p)::

        dV = D^T dO                                  (S, Ev)
        dD = dO V^T                                  (L, S)
        dP = dD * M / (1 - p)                        (L, S)
        dS = P * (dP - rowsum(dP * P))               (L, S)   softmax backward
        dQ = scale * dS K                            (L, E)
        dK = scale * dS^T Q                          (S, E)

    Masked entries have P = 0, so they get dS = 0: no gradient leaks to a
    blocked key, and a fully masked row gives zero gradient. With grouped
    heads, dK and dV sum over the query heads of each group; with broadcast
    batch dimensions, gradients sum over the broadcast axes.

    See docs/derivations.md, section "Scaled dot-product attention".
    """
    check_cache(cache, AttentionCache, "attention_forward")
    q, k, v, weights, dropout_mask, dropout_p, scale = cache
    dout = check_dout(dout, attention_output_shape(cache), q.dtype)
    q4, k4, v4 = _with_head_axis(q), _with_head_axis(k), _with_head_axis(v)
    weights4, dout4 = _with_head_axis(weights), _with_head_axis(dout)
    num_heads, num_kv_heads = q4.shape[-3], k4.shape[-3]

    keep_scale = None
    if dropout_mask is not None:
        keep_scale = _with_head_axis(dropout_scale(dropout_mask, dropout_p, q.dtype))
    dropped = weights4 if keep_scale is None else weights4 * keep_scale
    dout_groups = split_groups(dout4, num_kv_heads)

    dv = split_groups(dropped, num_kv_heads).swapaxes(-1, -2) @ dout_groups
    d_dropped = merge_groups(dout_groups @ v4.swapaxes(-1, -2), num_heads)
    d_weights = d_dropped if keep_scale is None else d_dropped * keep_scale
    d_scores = split_groups(softmax_grad(d_weights, weights4, axis=-1), num_kv_heads)
    dq = merge_groups(d_scores @ k4, num_heads) * scale
    dk = (d_scores.swapaxes(-1, -2) @ split_groups(q4, num_kv_heads)) * scale

    if q.ndim == 2:
        dq, dk, dv = dq[0], dk[0], dv[0]
    return unbroadcast(dq, q.shape), unbroadcast(dk, k.shape), unbroadcast(dv, v.shape)

"""Argument checks shared by the textbook pairs (``functional``) and the kernels (``kernels``).

Both must accept and reject exactly the same calls, so the checks are written
once, here; neither package's math depends on them beyond the checked values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .validation import (
    as_float_array,
    as_head_vector,
    as_mask,
    broadcast_batch,
    check_bool,
    check_probability,
    check_query_offset,
    check_real,
    check_softcap,
    check_window,
    same_dtype,
)


def check_qkv(q: Any, k: Any, v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate q (..., Hq, L, E), k (..., Hkv, T, E), v (..., Hkv, T, Ev)."""
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
            f"k and v must share the number of keys T (dimension -2); got k {k.shape} and v {v.shape}"
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
    """The shape that masks broadcast to: (..., Hq, L, T), or (L, T) for unbatched input."""
    if q.ndim == 2:
        return (q.shape[0], k.shape[0])
    batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
    return (*batch, q.shape[-3], q.shape[-2], k.shape[-2])


def check_attention_options(
    attn_mask: Any, dropout_p: Any, is_causal: Any, scale: Any, scores_shape: tuple, dtype: np.dtype, embed_dim: int
) -> tuple[np.ndarray | None, float, bool, float]:
    """Validate the options of every attention pair; ``scale`` defaults to 1/sqrt(E)."""
    is_causal = check_bool(is_causal, "is_causal")
    dropout_p = check_probability(dropout_p, "dropout_p")
    scale = check_real(scale, "scale", allow_none=True)
    if scale is None:
        # With E = 0 every score is an empty sum, 0 whatever the scale (torch: uniform weights).
        scale = 1.0 / math.sqrt(embed_dim) if embed_dim else 1.0
    if attn_mask is not None:
        if is_causal:
            raise ValueError(
                "attn_mask and is_causal=True cannot be combined (as in torch): "
                "pass a causal attn_mask, or is_causal=True alone"
            )
        attn_mask = as_mask(attn_mask, "attn_mask", scores_shape, dtype)
    return attn_mask, dropout_p, is_causal, scale


def check_attention_args(
    q: Any, k: Any, v: Any, attn_mask: Any, dropout_p: Any, is_causal: Any, scale: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float, bool, float]:
    """Every argument of an attention forward, checked: (q, k, v, attn_mask, dropout_p, is_causal, scale)."""
    q, k, v = check_qkv(q, k, v)
    options = check_attention_options(
        attn_mask, dropout_p, is_causal, scale, attention_scores_shape(q, k, v), q.dtype, q.shape[-1]
    )
    return (q, k, v, *options)


def check_score_options(
    q: np.ndarray, softcap: Any, alibi_slopes: Any, window: Any, sinks: Any, query_offset: Any
) -> tuple[float | None, np.ndarray | None, tuple | None, np.ndarray | None, int]:
    """The options of today's models, checked against q: (softcap, alibi_slopes, window, sinks, query_offset).

    ``alibi_slopes`` and ``sinks`` hold one value per query head, so they need
    q's head axis; ALiBi's constant slopes are cast to q's dtype, the learnable
    sinks must have it.
    """
    per_head = {"alibi_slopes": alibi_slopes, "sinks": sinks}
    if q.ndim < 3 and any(value is not None for value in per_head.values()):
        given = [name for name, value in per_head.items() if value is not None]
        raise ValueError(
            f"{' and '.join(given)} hold one value per query head and need q (..., Hq, L, E) with a head axis; "
            f"got unbatched q of shape {q.shape}: pass q[None], k[None], v[None]"
        )
    num_heads = q.shape[-3] if q.ndim >= 3 else 1
    return (
        check_softcap(softcap),
        None if alibi_slopes is None else as_head_vector(alibi_slopes, "alibi_slopes", num_heads, q.dtype, cast=True),
        check_window(window),
        None if sinks is None else as_head_vector(sinks, "sinks", num_heads, q.dtype),
        check_query_offset(query_offset),
    )


def check_linear_args(
    x: Any, weight: Any, bias: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate x (..., in_features), weight (out_features, in_features) and bias (out_features,) or None."""
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    arrays, names = [x, weight], ["x", "weight"]
    if bias is not None:
        bias = as_float_array(bias, "bias")
        arrays.append(bias)
        names.append("bias")
    same_dtype(arrays, names)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features); got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x must have in_features = {weight.shape[1]} in its last dimension "
            f"(weight is {weight.shape}); got x of shape {x.shape}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},); got {bias.shape}")
    return x, weight, bias


def check_layer_norm_args(
    x: Any, weight: Any, bias: Any, eps: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, float]:
    """Validate x (..., D), weight and bias (D,) or None, of x's dtype, and eps >= 0."""
    x = as_float_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have a feature axis to normalize; got a scalar")
    eps = check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps!r}")
    arrays, names = [x], ["x"]
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None:
            value = as_float_array(value, name)
            if value.shape != x.shape[-1:]:
                raise ValueError(f"{name} must have shape ({x.shape[-1]},) (x's last axis); got {value.shape}")
            arrays.append(value)
            names.append(name)
    same_dtype(arrays, names)
    weight = arrays[names.index("weight")] if weight is not None else None
    bias = arrays[names.index("bias")] if bias is not None else None
    return x, weight, bias, eps

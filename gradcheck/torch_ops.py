"""The library's ops written with torch, as references for :func:`gradcheck.compare_with_torch`.

Each function takes torch tensors (as ``compare_with_torch`` hands them over)
and imports nothing at module level: torch is needed only when one is called.
Where torch has the op, the op is used as torch ships it; dropout is the
exception, since torch cannot be given our mask: there the reference is the
textbook composition with our keep-mask.
"""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import numpy as np

from .reference import require_torch


def attention(
    q: Any, k: Any, v: Any, attn_mask: Any = None, is_causal: bool = False, scale: float | None = None,
    dropout_mask: np.ndarray | None = None, dropout_p: float = 0.0,
) -> Any:
    """``scaled_dot_product_attention`` as torch computes it (grouped-query heads via ``enable_gqa``).

    With a ``dropout_mask`` (the boolean keep-mask our forward drew), the
    probabilities are multiplied by ``keep / (1 - p)`` before ``@ v``.
    """
    torch = require_torch()
    mask = attention_mask_tensor(attn_mask, q.dtype)
    gqa = q.dim() > 2 and q.shape[-3] != k.shape[-3]
    if dropout_mask is None:
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=gqa
        )
    if gqa:
        group = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
    scores = (scale if scale is not None else 1 / math.sqrt(q.shape[-1])) * q @ k.transpose(-1, -2)
    if is_causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, -torch.inf) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a fully masked row: 0, as ours
    keep = torch.tensor(dropout_mask, dtype=q.dtype) / (1 - dropout_p)  # a copy: the mask may be read-only
    return (weights * keep) @ v


def as_mask_tensor(mask: np.ndarray | None, dtype: Any) -> Any:
    """A NumPy mask as a torch tensor: boolean as is, float in the computation's dtype."""
    if mask is None:
        return None
    tensor = require_torch().as_tensor(mask)
    return tensor if tensor.dtype == require_torch().bool else tensor.to(dtype)


def attention_mask_tensor(mask: np.ndarray | None, dtype: Any) -> Any:
    """An attention mask for the scores: a 1-D mask (T,) is (1, T), as NumPy broadcasts it (torch's SDPA wants
    two axes at least)."""
    return as_mask_tensor(mask if mask is None or np.ndim(mask) >= 2 else np.reshape(mask, (1, -1)), dtype)


def softmax(x: Any, axis: int = -1) -> Any:
    return require_torch().softmax(x, dim=axis)


def embedding(indices: Any, weight: Any, padding_idx: int | None = None) -> Any:
    return require_torch().nn.functional.embedding(indices, weight, padding_idx)


def cross_entropy(logits: Any, target: Any, ignore_index: int = -100, reduction: str = "mean") -> Any:
    return require_torch().nn.functional.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)


def linear(x: Any, weight: Any, bias: Any = None) -> Any:
    return require_torch().nn.functional.linear(x, weight, bias)


def multi_head_attention(
    params: dict, query: Any, key: Any = None, value: Any = None, *, num_heads: int,
    key_padding_mask: np.ndarray | None = None, attn_mask: np.ndarray | None = None, is_causal: bool = False,
    need_weights: bool = True, batch_first: bool = True, add_zero_attn: bool = False,
    dropout_mask: np.ndarray | None = None, dropout_p: float = 0.0,
    return_weights: bool = False, average_attn_weights: bool = True,
) -> Any:
    """``MultiHeadAttention``'s output (or, with ``return_weights``, its weights) from its parameters with torch.

    Runs ``torch.nn.functional.multi_head_attention_forward`` with separate q/k/v
    weights: torch's own code for masks, ``bias_k``/``bias_v``, ``add_zero_attn``,
    kdim/vdim and layouts. With a ``dropout_mask``, torch's ``dropout`` is
    swapped for the call by one that applies our mask. Grouped-query
    configurations (fewer k/v heads), which torch's function lacks, go through
    :func:`grouped_query_attention`. The weights are torch's: after dropout,
    averaged over the heads if ``average_attn_weights``.
    """
    torch = require_torch()
    key = query if key is None else key
    value = query if value is None else value
    embed_dim = params["q_proj.weight"].shape[0]
    if params["k_proj.weight"].shape[0] != embed_dim:
        return grouped_query_attention(
            params, query, key, value, num_heads=num_heads, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
            is_causal=is_causal, batch_first=batch_first, add_zero_attn=add_zero_attn, dropout_mask=dropout_mask,
            dropout_p=dropout_p, return_weights=return_weights, average_attn_weights=average_attn_weights)
    batched = query.dim() == 3

    def seq_first(x: Any) -> Any:
        return x if batched and not batch_first else x.transpose(0, 1) if batched else x.unsqueeze(1)

    q, k, v = (seq_first(x) for x in (query, key, value))
    masks = {"key_padding_mask": as_mask_tensor(key_padding_mask, q.dtype),
             "attn_mask": as_mask_tensor(attn_mask, q.dtype)}
    if masks["key_padding_mask"] is not None and not batched:
        masks["key_padding_mask"] = masks["key_padding_mask"].unsqueeze(0)
    if is_causal and attn_mask is None:  # torch wants the mask itself, in the kind of the other mask
        causal = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool).triu(1)
        padding = masks["key_padding_mask"]
        if padding is not None and padding.dtype != torch.bool:
            causal = torch.zeros(causal.shape, dtype=padding.dtype).masked_fill(causal, float("-inf"))
        masks["attn_mask"] = causal
    biases = [params.get(f"{name}_proj.bias") for name in "qkv"]

    def dropout_with_our_mask(x: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
        return x * torch.as_tensor(dropout_mask, dtype=x.dtype).reshape(x.shape) / (1 - p)

    swap = dropout_with_our_mask if dropout_mask is not None else torch.nn.functional.dropout
    with mock.patch.object(torch.nn.functional, "dropout", swap):
        out, weights = torch.nn.functional.multi_head_attention_forward(
            q, k, v, embed_dim, num_heads, None, None if biases[0] is None else torch.cat(biases),
            params.get("bias_k"), params.get("bias_v"), add_zero_attn, dropout_p, params["out_proj.weight"],
            params.get("out_proj.bias"), training=dropout_mask is not None, **masks,
            need_weights=need_weights or return_weights or dropout_mask is not None,  # the path that calls dropout()
            use_separate_proj_weight=True, q_proj_weight=params["q_proj.weight"],
            k_proj_weight=params["k_proj.weight"], v_proj_weight=params["v_proj.weight"],
            average_attn_weights=average_attn_weights,
        )
    if return_weights:
        return weights if batched else weights[0]
    return out.transpose(0, 1) if batched and batch_first else out if batched else out.squeeze(1)


def grouped_query_attention(
    params: dict, query: Any, key: Any, value: Any, *, num_heads: int, key_padding_mask: np.ndarray | None = None,
    attn_mask: np.ndarray | None = None, is_causal: bool = False, batch_first: bool = True,
    add_zero_attn: bool = False, dropout_mask: np.ndarray | None = None, dropout_p: float = 0.0,
    return_weights: bool = False, average_attn_weights: bool = True,
) -> Any:
    """Grouped-query multi-head attention from torch ops, with torch MultiheadAttention's every option.

    Projections; ``bias_k``/``bias_v`` then a zero key/value appended (``add_zero_attn``);
    k/v heads repeated for their G query heads (``repeat_interleave``); the masks in
    torch's MultiheadAttention convention (boolean True = not allowed, float added;
    ``attn_mask`` (L, S) or (N * H, L, S), ``key_padding_mask`` (N, S); ``is_causal``
    alone builds the causal mask), padded with 0 for the appended keys; softmax (a row
    with no visible key gives 0, as ours); our dropout mask; the output projection.
    """
    torch = require_torch()
    linear = torch.nn.functional.linear
    batched = query.dim() == 3

    def batch_first_3d(x: Any) -> Any:
        return x.unsqueeze(0) if not batched else x if batch_first else x.transpose(0, 1)

    q, k, v = (linear(batch_first_3d(x), params[f"{name}_proj.weight"], params.get(f"{name}_proj.bias"))
               for x, name in zip((query, key, value), "qkv"))
    batch, queries, keys = q.shape[0], q.shape[1], k.shape[1]
    if "bias_k" in params:
        k = torch.cat([k, params["bias_k"].expand(batch, 1, -1)], dim=1)
        v = torch.cat([v, params["bias_v"].expand(batch, 1, -1)], dim=1)
    if add_zero_attn:
        k = torch.cat([k, k.new_zeros(batch, 1, k.shape[-1])], dim=1)
        v = torch.cat([v, v.new_zeros(batch, 1, v.shape[-1])], dim=1)
    appended = k.shape[1] - keys
    head_dim = q.shape[-1] // num_heads
    group = num_heads // (k.shape[-1] // head_dim)
    q, k, v = (x.unflatten(-1, (-1, head_dim)).transpose(1, 2) for x in (q, k, v))
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)  # (N, H, L, S')

    def additive(mask: Any, shape: tuple) -> Any:
        mask = as_mask_tensor(mask, q.dtype)
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(mask, -torch.inf)
        return torch.nn.functional.pad(mask.reshape(shape), (0, appended))

    if attn_mask is not None:
        shape = (1, 1, queries, keys) if np.ndim(attn_mask) == 2 else (batch, num_heads, queries, keys)
        scores = scores + additive(attn_mask, shape)
    elif is_causal:
        scores = scores + additive(np.triu(np.ones((queries, keys), dtype=bool), 1), (1, 1, queries, keys))
    if key_padding_mask is not None:
        scores = scores + additive(key_padding_mask, (batch, 1, 1, keys))
    empty = torch.isneginf(scores).all(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    if dropout_mask is not None:
        weights = weights * torch.as_tensor(dropout_mask, dtype=q.dtype).reshape(weights.shape) / (1 - dropout_p)
    if return_weights:
        returned = weights.mean(dim=1) if average_attn_weights else weights
        return returned if batched else returned[0]
    heads = weights @ v
    out = linear(heads.transpose(1, 2).flatten(2), params["out_proj.weight"], params.get("out_proj.bias"))
    return out[0] if not batched else out if batch_first else out.transpose(0, 1)


# --- RoPE, RMSNorm, score modifications and sinks (references of the options of today's attention) ---

def rope(x: Any, positions: Any = None, base: float = 10000.0, interleaved: bool = False) -> Any:
    """Rotary embedding from torch ops: x * cos + swap(x) * sin, the angles repeated in the layout's order.

    ``swap`` maps each pair (a, b) to (-b, a): Hugging Face's ``rotate_half`` for the half-split
    layout, GPT-J's ``rotate_every_two`` for the interleaved one.
    """
    torch = require_torch()
    length, dim = x.shape[-2], x.shape[-1]
    positions = torch.arange(length) if positions is None else torch.as_tensor(positions)
    frequencies = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = torch.outer(positions.to(torch.float64), frequencies)  # (L, D/2)
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)
        swapped = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
    else:
        angles = angles.repeat(1, 2)
        swapped = torch.cat([-x[..., dim // 2:], x[..., : dim // 2]], dim=-1)
    return x * angles.cos().to(x.dtype) + swapped * angles.sin().to(x.dtype)


def rms_norm(x: Any, weight: Any = None, eps: float = 1e-6, normalized_shape: tuple | None = None) -> Any:
    """torch's ``rms_norm`` over ``normalized_shape`` (default: the last axis)."""
    shape = (x.shape[-1],) if normalized_shape is None else normalized_shape
    return require_torch().nn.functional.rms_norm(x, shape, weight, eps)


def score_mod(scores: Any, query_pos: Any, key_pos: Any, softcap: float | None = None, alibi_slopes: Any = None) -> Any:
    """``c * tanh(s / c)``, then ``- slope_h * |i - j|``, from torch ops."""
    torch = require_torch()
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:
        distance = (torch.as_tensor(query_pos)[:, None] - torch.as_tensor(key_pos)[None, :]).abs()
        scores = scores - torch.as_tensor(alibi_slopes, dtype=scores.dtype)[:, None, None] * distance
    return scores


def softmax_with_sink(scores: Any, sinks: Any, visible: np.ndarray | None = None) -> Any:
    """The weights over the keys of a softmax over the logits with one sink column per head appended.

    ``visible`` (bool, broadcast to the scores) masks the other entries with -inf first.
    """
    torch = require_torch()
    if visible is not None:
        scores = scores.masked_fill(~torch.as_tensor(visible), -torch.inf)
    sink_column = sinks[:, None, None].expand(*scores.shape[:-1], 1)
    return torch.softmax(torch.cat([scores, sink_column], dim=-1), dim=-1)[..., :-1]


def attention_with_options(
    q: Any, k: Any, v: Any, sinks: Any = None, *, attn_mask: np.ndarray | None = None, is_causal: bool = False,
    scale: float | None = None, softcap: float | None = None, alibi_slopes: Any = None,
    window: tuple | None = None, query_offset: int = 0,
) -> Any:
    """Attention with every option of today's models, from the published formulas in plain torch ops.

    Scores ``scale * q k^T``; ``softcap``: ``c tanh(s / c)``; ALiBi: ``- slope_h |i + offset - j|``; the
    masks (boolean ``attn_mask``, causal, ``window=(left, right)``, as triangles of torch's ``tril`` /
    ``triu`` with diagonals shifted by ``query_offset``) ANDed, a float ``attn_mask`` added; ``sinks``: a
    softmax over the logits with one sink column per head appended, then dropped. Grouped-query heads
    by repetition. A row with no visible key gives 0 (without sinks: its weights are 0).
    """
    torch = require_torch()
    if q.dim() == 2:  # unbatched (L, E): one head, as torch's scaled_dot_product_attention reads it
        return attention_with_options(q[None], k[None], v[None], sinks, attn_mask=attn_mask, is_causal=is_causal,
                                      scale=scale, softcap=softcap, alibi_slopes=alibi_slopes, window=window,
                                      query_offset=query_offset)[0]
    group = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
    length, keys = q.shape[-2], k.shape[-2]
    scores = (scale if scale is not None else 1 / math.sqrt(q.shape[-1])) * q @ k.transpose(-1, -2)
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:
        query_pos = torch.arange(length)[:, None] + query_offset
        distance = (query_pos - torch.arange(keys)[None, :]).abs()
        scores = scores - torch.as_tensor(alibi_slopes, dtype=scores.dtype)[:, None, None] * distance
    allowed = torch.ones(length, keys, dtype=torch.bool)
    if is_causal:
        allowed = allowed.tril(query_offset)
    if window is not None and window[0] is not None:
        allowed = allowed.triu(query_offset - window[0])
    if window is not None and window[1] is not None:
        allowed = allowed.tril(query_offset + window[1])
    mask = attention_mask_tensor(attn_mask, q.dtype)
    if mask is not None and mask.dtype == torch.bool:
        allowed = allowed & mask
    elif mask is not None:
        scores = scores + mask
    scores = scores.masked_fill(~allowed, -torch.inf)
    if sinks is not None:
        sink_column = sinks[:, None, None].expand(*scores.shape[:-1], 1)
        weights = torch.softmax(torch.cat([scores, sink_column], dim=-1), dim=-1)[..., :-1]
    else:  # softmax of a row of -inf is NaN: give such rows finite logits, then weights 0
        empty = torch.isneginf(scores).all(dim=-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(empty, 0.0)
    return weights @ v

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
    mask = None if attn_mask is None else torch.as_tensor(attn_mask)
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
    keep = torch.as_tensor(dropout_mask, dtype=q.dtype) / (1 - dropout_p)
    return (weights * keep) @ v


def softmax(x: Any, axis: int = -1) -> Any:
    return require_torch().softmax(x, dim=axis)


def linear(x: Any, weight: Any, bias: Any = None) -> Any:
    return require_torch().nn.functional.linear(x, weight, bias)


def multi_head_attention(x: Any, w_q: Any, b_q: Any, w_k: Any, b_k: Any, w_v: Any, b_v: Any, w_o: Any, b_o: Any,
                         *, num_heads: int) -> Any:
    """Self-attention through ``torch.nn.functional.multi_head_attention_forward``, batch first.

    x is (batch, seq, embed); weights are (out_features, in_features) as in torch.
    """
    torch = require_torch()
    seq_first = x.transpose(0, 1)
    out, _ = torch.nn.functional.multi_head_attention_forward(
        seq_first, seq_first, seq_first, x.shape[-1], num_heads,
        in_proj_weight=None, in_proj_bias=torch.cat([b_q, b_k, b_v]), bias_k=None, bias_v=None,
        add_zero_attn=False, dropout_p=0.0, out_proj_weight=w_o, out_proj_bias=b_o, training=False,
        need_weights=False, use_separate_proj_weight=True, q_proj_weight=w_q, k_proj_weight=w_k, v_proj_weight=w_v,
    )
    return out.transpose(0, 1)

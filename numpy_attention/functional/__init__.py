"""Differentiable ops as forward/backward pairs.

Every op follows one convention (like JAX's ``custom_vjp``, without the magic)::

    out, cache = OP_forward(inputs..., options...)
    grads      = OP_backward(dout, cache)   # one gradient per differentiable input

The cache holds exactly what the backward needs. Forward never mutates its
inputs; backward never mutates ``dout`` or the cache.
"""

from __future__ import annotations

import numpy as np

from .attention import AttentionCache, attention_backward, attention_forward
from .embedding import EmbeddingCache, embedding_backward, embedding_forward
from .erf import erf, erfc
from .flash import FlashAttentionCache, flash_attention_backward, flash_attention_forward
from .gelu import GeluCache, gelu_backward, gelu_forward
from .layer_norm import LayerNormCache, layer_norm_backward, layer_norm_forward
from .linear import LinearCache, linear_backward, linear_forward
from .loss import CrossEntropyCache, cross_entropy_backward, cross_entropy_forward
from .softmax import SoftmaxCache, softmax_backward, softmax_forward


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
) -> np.ndarray:
    """The output of :func:`attention_forward` alone, shaped like torch's function of that name."""
    out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng)
    return out


__all__ = [
    "AttentionCache",
    "CrossEntropyCache",
    "EmbeddingCache",
    "FlashAttentionCache",
    "GeluCache",
    "LayerNormCache",
    "LinearCache",
    "SoftmaxCache",
    "attention_backward",
    "attention_forward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "embedding_backward",
    "embedding_forward",
    "erf",
    "erfc",
    "flash_attention_backward",
    "flash_attention_forward",
    "gelu_backward",
    "gelu_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "linear_backward",
    "linear_forward",
    "scaled_dot_product_attention",
    "softmax_backward",
    "softmax_forward",
]

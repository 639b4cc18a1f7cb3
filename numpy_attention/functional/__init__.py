"""The textbook: every differentiable op as a forward/backward pair, written as its derivation.

Every op follows one convention (like JAX's ``custom_vjp``, without the magic)::

    out, cache = OP_forward(inputs..., options...)
    grads      = OP_backward(dout, cache)   # one gradient per differentiable input

The cache holds exactly what the backward needs. Forward never mutates its
inputs; backward never mutates ``dout`` or the cache. These pairs are the spec,
meant to be read beside docs/derivations.md: straight-line NumPy, one line per
equation, in the notation of its Conventions. :mod:`numpy_attention.kernels`
computes the attention and linear pairs faster, with the same signatures and
results; the modules run the kernels by default.
"""

from __future__ import annotations

from .attention import AttentionCache, attention_backward, attention_forward, scaled_dot_product_attention
from .embedding import EmbeddingCache, embedding_backward, embedding_forward
from .erf import erf, erfc, normal_cdf
from .flash import FlashAttentionCache, flash_attention_backward, flash_attention_forward
from .gelu import GeluCache, gelu_backward, gelu_forward
from .layer_norm import LayerNormCache, layer_norm_backward, layer_norm_forward
from .linear import LinearCache, linear_backward, linear_forward
from .loss import CrossEntropyCache, cross_entropy_backward, cross_entropy_forward
from .rms_norm import RMSNormCache, rms_norm_backward, rms_norm_forward
from .rope import RopeCache, rope_backward, rope_forward
from .score_mods import (
    ScoreModCache,
    SoftmaxWithSinkCache,
    score_mod_backward,
    score_mod_forward,
    softmax_with_sink_backward,
    softmax_with_sink_forward,
)
from .softmax import SoftmaxCache, softmax_backward, softmax_forward
from .swiglu import SwiGLUCache, swiglu_backward, swiglu_forward

__all__ = [
    "AttentionCache",
    "CrossEntropyCache",
    "EmbeddingCache",
    "FlashAttentionCache",
    "GeluCache",
    "LayerNormCache",
    "LinearCache",
    "RMSNormCache",
    "RopeCache",
    "ScoreModCache",
    "SoftmaxCache",
    "SoftmaxWithSinkCache",
    "SwiGLUCache",
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
    "normal_cdf",
    "rms_norm_backward",
    "rms_norm_forward",
    "rope_backward",
    "rope_forward",
    "scaled_dot_product_attention",
    "score_mod_backward",
    "score_mod_forward",
    "softmax_backward",
    "softmax_forward",
    "softmax_with_sink_backward",
    "softmax_with_sink_forward",
    "swiglu_backward",
    "swiglu_forward",
]

"""Transformer attention in pure NumPy, every backward pass derived by hand.

    >>> import numpy as np, numpy_attention as na
    >>> x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    >>> out = na.scaled_dot_product_attention(x, x, x)

The ops live in :mod:`numpy_attention.functional` as forward/backward pairs,
written as their derivations; :mod:`numpy_attention.kernels` computes the same
pairs faster. The modules here own parameters and run the kernels by default.
"""

from . import functional, kernels, optim
from .blocks import GELU, LayerNorm
from .kernels import scaled_dot_product_attention
from .layers import Embedding, Linear, ScaledDotProductAttention
from .modern import CausalSelfAttention
from .module import Module
from .multihead import MultiHeadAttention
from .norms import RMSNorm
from .optim import Adam, AdamW, clip_grad_norm

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "AdamW",
    "CausalSelfAttention",
    "Embedding",
    "GELU",
    "LayerNorm",
    "Linear",
    "Module",
    "MultiHeadAttention",
    "RMSNorm",
    "ScaledDotProductAttention",
    "clip_grad_norm",
    "functional",
    "kernels",
    "optim",
    "scaled_dot_product_attention",
]

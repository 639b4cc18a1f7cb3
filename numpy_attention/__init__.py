"""Transformer attention in pure NumPy, every backward pass derived by hand.

    >>> import numpy as np, numpy_attention as na
    >>> x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    >>> out = na.scaled_dot_product_attention(x, x, x)

The ops live in :mod:`numpy_attention.functional` as forward/backward pairs;
the modules here own parameters and call those pairs.
"""

from . import functional, optim
from .blocks import GELU, LayerNorm
from .functional import scaled_dot_product_attention
from .layers import Embedding, Linear, ScaledDotProductAttention
from .module import Module
from .multihead import MultiHeadAttention
from .optim import Adam, AdamW, clip_grad_norm

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "AdamW",
    "Embedding",
    "GELU",
    "LayerNorm",
    "Linear",
    "Module",
    "MultiHeadAttention",
    "ScaledDotProductAttention",
    "clip_grad_norm",
    "functional",
    "optim",
    "scaled_dot_product_attention",
]

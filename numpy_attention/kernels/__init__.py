"""The engines: the textbook pairs of :mod:`numpy_attention.functional`, scheduled for speed.

Each function here takes the same arguments and returns the same results as the
textbook pair of the same name (to 1e-12 relative in float64: tests/test_kernels.py
proves it on the shared case grid, block sizes from 1 up)::

    attention_forward / attention_backward               dense: stores the weights P (L x T)
    flash_attention_forward / flash_attention_backward   tiled: memory linear in L and T
    linear_forward / linear_backward                     large products split between the cores
    gelu_forward / gelu_backward                         the elements split between the cores
    layer_norm_forward / layer_norm_backward             the rows split between the cores
    embedding_forward / embedding_backward               the backward's scatter-add as a sort and sums

The modules and :func:`numpy_attention.scaled_dot_product_attention` run these by
default. How the work is cut into tiles, chunks of heads and threads lives in one
place, :mod:`numpy_attention.kernels.schedule`; docs/performance.md tells each step
from the textbook pair to these kernels, with its measured gain.
"""

from __future__ import annotations

import numpy as np

from .dense import AttentionCache, attention_backward, attention_forward
from .embedding import embedding_backward, embedding_forward
from .flash import FlashAttentionCache, flash_attention_backward, flash_attention_forward
from .gelu import gelu_backward, gelu_forward
from .layer_norm import layer_norm_backward, layer_norm_forward
from .linear import linear_backward, linear_forward


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
    **options: object,
) -> np.ndarray:
    """The output of the dense kernel's :func:`attention_forward` alone, shaped like torch's function of that name.

    ``options`` are today's keyword options of :func:`attention_forward` (``softcap``,
    ``alibi_slopes``, ``window``, ``sinks``, ``query_offset``).
    """
    out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng, **options)
    return out


__all__ = [
    "AttentionCache",
    "FlashAttentionCache",
    "attention_backward",
    "attention_forward",
    "embedding_backward",
    "embedding_forward",
    "flash_attention_backward",
    "flash_attention_forward",
    "gelu_backward",
    "gelu_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "linear_backward",
    "linear_forward",
    "scaled_dot_product_attention",
]

"""Embedding lookup, forward and backward, as ``torch.nn.functional.embedding``.

See docs/derivations.md, section "Embedding".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, as_index_array, check_cache, check_dout, check_index


class EmbeddingCache(NamedTuple):
    """What the embedding backward needs: the indices, the table's shape and dtype, the padding row."""

    indices: np.ndarray
    weight_shape: tuple
    dtype: np.dtype
    padding_idx: int | None


def embedding_forward(
    indices: np.ndarray, weight: np.ndarray, padding_idx: int | None = None
) -> tuple[np.ndarray, EmbeddingCache]:
    """Look up rows of ``weight``: ``out[..., :] = weight[indices[...], :]``.

    Parameters
    ----------
    indices : integer ndarray (...), entries in [0, num_embeddings)
    weight : ndarray (num_embeddings, embedding_dim)
    padding_idx : int, optional
        The row that receives no gradient (negative values count from the end, as in torch).

    Returns
    -------
    out : ndarray (..., embedding_dim), the dtype of ``weight``
    cache : EmbeddingCache
    """
    weight = as_float_array(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (num_embeddings, embedding_dim); got shape {weight.shape}")
    indices = as_index_array(indices, "indices", weight.shape[0])
    if padding_idx is not None:
        padding_idx = check_index(padding_idx, "padding_idx", weight.shape[0])
    out = weight[indices]
    return out, EmbeddingCache(indices, weight.shape, weight.dtype, padding_idx)


def embedding_backward(dout: np.ndarray, cache: EmbeddingCache) -> np.ndarray:
    """Gradient of the lookup with respect to ``weight`` (indices are not differentiable).

    Each output row is a copy of one table row, so a table row receives the
    sum of the upstream gradients of every position that looked it up::

        dW[v] = sum(dout[n] for every position n with indices[n] == v)    (num_embeddings, dim)
        dW[padding_idx] = 0

    ``np.add.at`` does the scatter-add: ``dW[indices] += dout`` would keep only
    one of the repeated rows.

    See docs/derivations.md, section "Embedding".
    """
    check_cache(cache, EmbeddingCache, "embedding_forward")
    num_embeddings, dim = cache.weight_shape
    dout = check_dout(dout, cache.indices.shape + (dim,), cache.dtype)
    dweight = np.zeros(cache.weight_shape, dtype=cache.dtype)
    np.add.at(dweight, cache.indices.reshape(-1), dout.reshape(-1, dim))
    if cache.padding_idx is not None:
        dweight[cache.padding_idx] = 0
    return dweight

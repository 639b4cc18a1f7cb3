"""The embedding kernel: :mod:`numpy_attention.functional.embedding`'s backward as a sort and one sum per row.

The lookup (``weight[indices]``) is the textbook's own. Its backward scatter-adds
every upstream row into the table row it looked up; the textbook's ``np.add.at``
does that one position at a time. Here the positions are sorted by index (stably,
so each table row's terms keep their order) and each run of equal indices is summed
by one ``np.add.reduceat``: the same sums, in the same order, to rounding
(tests/test_kernels.py), in a quarter of the time for a GPT's batch
(docs/performance.md, "A GPT's training step").
"""

from __future__ import annotations

import numpy as np

from ..functional.embedding import EmbeddingCache, embedding_forward
from ..validation import check_cache, check_dout

__all__ = ["embedding_backward", "embedding_forward"]


def embedding_backward(dout: np.ndarray, cache: EmbeddingCache) -> np.ndarray:
    """Gradient of the lookup with respect to ``weight``, as the textbook ``embedding_backward``::

        dW[v] = sum(dout[n] for every position n with indices[n] == v)    (num_embeddings, dim)
        dW[padding_idx] = 0

    See docs/derivations.md, section "Embedding".
    """
    check_cache(cache, EmbeddingCache, "embedding_forward")
    num_embeddings, dim = cache.weight_shape
    dout = check_dout(dout, cache.indices.shape + (dim,), cache.dtype)
    indices, rows = cache.indices.reshape(-1), dout.reshape(-1, dim)
    dweight = np.zeros(cache.weight_shape, dtype=cache.dtype)
    if indices.size:
        order = np.argsort(indices, kind="stable")
        sorted_indices = indices[order]
        # The first position of each run of equal indices: where the sorted index changes.
        starts = np.flatnonzero(np.concatenate(([True], sorted_indices[1:] != sorted_indices[:-1])))
        dweight[sorted_indices[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    if cache.padding_idx is not None:
        dweight[cache.padding_idx] = 0
    return dweight

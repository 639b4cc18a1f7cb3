"""Dropout on the attention weights: the keep-mask, drawn whole or regenerated tile by tile.

Dropout multiplies each weight by ``Z = keep / (1 - p)``, where ``keep`` is
True with probability ``1 - p``, so the expected weight is unchanged. The
dense pair draws the whole (..., Hq, L, T) keep-mask from ``rng`` and keeps it
for its backward. The tiled pair never holds an L x T array, yet its backward
needs the forward's mask: there, entry n of the flattened keep-mask is decided
by the n-th output of SplitMix64 (Steele, Lea & Flood, 2014) started at a seed
drawn once per forward, so any tile of the mask can be regenerated from the
seed alone, and the mask is the same for every tile size.

See docs/derivations.md, sections "Dropout" and "Tiled attention: online
softmax forward and tiled backward".
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import as_generator


def draw_keep_mask(shape: tuple, dropout_p: float, rng: np.random.Generator | None) -> np.ndarray | None:
    """Boolean keep-mask of ``shape``, each entry kept with probability 1 - p; None when p = 0."""
    if dropout_p == 0.0:
        return None
    return as_generator(rng).random(shape) >= dropout_p


def dropout_factor(keep: np.ndarray, dropout_p: float, dtype: np.dtype) -> np.ndarray:
    """``Z = keep / (1 - p)``: the factor that multiplies the weights, 1 / (1 - p) where kept, 0 where dropped."""
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - dropout_p), dtype=dtype)


_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def draw_dropout_seed(dropout_p: float, rng: np.random.Generator | None) -> np.uint64 | None:
    """One 64-bit seed per forward, from ``rng``; None when there is no dropout."""
    if dropout_p == 0.0:
        return None
    return as_generator(rng).integers(0, 2**64, dtype=np.uint64)


def position_keep_mask(
    seed: np.uint64, scores_shape: tuple, rows: slice, cols: slice, dropout_p: float, heads: np.ndarray | None = None
) -> np.ndarray:
    """Boolean keep-mask of tile (rows, cols) of a (..., Hq, L, T) attention, broadcastable to it.

    ``heads`` are the positions, in the flattened (..., Hq), of the heads the tile
    covers (default: all of them, in their shape). ``position_keep_mask(seed, shape,
    slice(0, L), slice(0, T), p)`` is the whole mask.
    """
    *all_heads, num_queries, num_keys = scores_shape
    if heads is None:
        heads = np.arange(math.prod(all_heads)).reshape(all_heads)
    head_index = heads.astype(np.uint64)[..., None, None]
    row_index = np.arange(rows.start, rows.stop, dtype=np.uint64)[:, None]
    col_index = np.arange(cols.start, cols.stop, dtype=np.uint64)
    position = (head_index * np.uint64(num_queries) + row_index) * np.uint64(num_keys) + col_index
    z = (position + np.uint64(1)) * _GOLDEN_GAMMA + seed  # uint64 arithmetic wraps, as intended
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    z ^= z >> np.uint64(31)
    uniform = (z >> np.uint64(11)) * 2.0**-53  # the top 53 bits: a float64 in [0, 1)
    return uniform >= dropout_p


def position_dropout_factor(
    seed: np.uint64 | None, dropout_p: float, scores_shape: tuple, rows: slice, cols: slice, dtype: np.dtype,
    heads: np.ndarray | None = None,
) -> np.ndarray | float:
    """The tile's dropout factor ``Z = keep / (1 - p)`` (see :func:`position_keep_mask`), or 1.0 without dropout."""
    if seed is None:
        return 1.0
    return dropout_factor(position_keep_mask(seed, scores_shape, rows, cols, dropout_p, heads), dropout_p, dtype)

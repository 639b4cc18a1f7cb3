"""Entries whose sizes span several tiles in every implementation, causal ones with small blocks.

The tiled pairs get ``block_size`` as an argument; the dense kernel and the modules
run inside :func:`numpy_attention.kernels.schedule.tile_limits`, which caps the dense
kernel's query tiles and the flash kernel's default blocks. L and T are chosen so
that the tiles do not divide them (a short last tile), and the causal entries put
diagonal tiles where a wrong offset changes which keys a row sees: L = T, L < T
and L > T, with square and non-square blocks.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from numpy_attention.kernels.schedule import tile_limits

from ..targets import Entry, attention_target, mha_target, sdpa_module_target
from .common import as_tier

TILE_ROWS = 2  # the dense kernel's query tiles (and the flash kernel's default blocks) under tile_limits


def tiled(target: Any, rows: int = TILE_ROWS) -> Any:
    """Under tile_limits; finite differences along random directions (torch compares every element)."""
    target.fast = True
    return as_tier(target, context=functools.partial(tile_limits, rows=rows))


def tile_entry(name: str, impl: str, q: tuple, k: tuple, v: tuple, *, block: Any = (2, 3), rows: int = TILE_ROWS,
               **options: Any) -> Entry:
    """The pair ``impl`` with ``block_size=block`` (tiled pairs) or query tiles of ``rows`` (dense kernel)."""
    return Entry(f"tiles/{impl}/{name}",
                 lambda dt: tiled(attention_target(dt, q, k, v, impl=impl, block_size=block, **options), rows))


def tile_module_entry(name: str, build: Any, rows: int = TILE_ROWS) -> Entry:
    return Entry(f"tiles/{name}", lambda dt: tiled(build(dt), rows))


def tile_entries(impl: str) -> list[Entry]:
    """L = 7 queries, T = 9 keys (or as named) in tiles of 2 rows by 3 keys, for one implementation."""
    A = ((1, 2, 7, 3), (1, 2, 9, 3), (1, 2, 9, 4))  # L = 7 queries, T = 9 keys
    SQUARE = ((1, 2, 7, 3), (1, 2, 7, 3), (1, 2, 7, 2))  # L = T = 7
    return [
        tile_entry("L7-T9", impl, *A),
        tile_entry("gqa-float-mask", impl, (2, 4, 7, 3), (2, 2, 9, 3), (2, 2, 9, 2), mask="float"),
        tile_entry("bool-mask-empty-row", impl, *A, mask="empty-row"),
        tile_entry("dropout", impl, *A, dropout_p=0.3),
        tile_entry("causal-L=T", impl, *SQUARE, is_causal=True, block=2),
        tile_entry("causal-L=T-blocks-3x2", impl, *SQUARE, is_causal=True, block=(3, 2), rows=3),
        tile_entry("causal-L<T", impl, (1, 2, 5, 3), (1, 2, 8, 3), (1, 2, 8, 2), is_causal=True, block=(2, 3)),
        tile_entry("causal-L>T", impl, (1, 2, 8, 3), (1, 2, 5, 3), (1, 2, 5, 2), is_causal=True, block=(3, 2)),
        tile_entry("gqa-causal-dropout", impl, (1, 4, 6, 3), (1, 2, 6, 3), (1, 2, 6, 2), is_causal=True,
                   dropout_p=0.25, block=2),
    ]


def tile_module_entries(impl: str) -> list[Entry]:
    """The modules on a kernel, under tile_limits (the textbook pairs take no limits): SDPA and MHA modules."""
    weights = impl != "flash"  # MHA with weights runs the dense pair
    return [
        tile_module_entry(f"ScaledDotProductAttention/{impl}-causal-L=T", functools.partial(
            _sdpa_square, impl=impl)),
        tile_module_entry(f"MultiHeadAttention/{impl}-causal", functools.partial(
            mha_target, queries=7, is_causal=True, need_weights=weights, impl=impl)),
        tile_module_entry(f"MultiHeadAttention/{impl}-cross-masks-dropout", functools.partial(
            mha_target, queries=5, keys=7, masks="bool", dropout=0.2, training=True, need_weights=weights,
            impl=impl)),
    ]


def _sdpa_square(dtype: np.dtype, impl: str) -> Any:
    return sdpa_module_target(dtype, is_causal=True, impl=impl, shapes=((1, 2, 7, 3), (1, 2, 7, 3), (1, 2, 7, 2)))


TILE_IMPLS = ("dense", "flash", "textbook", "textbook-flash")
ENTRIES: list[Entry] = [entry for impl in TILE_IMPLS for entry in tile_entries(impl)]
ENTRIES += [entry for impl in ("dense", "flash") for entry in tile_module_entries(impl)]

"""Entries whose sizes span several tiles in every implementation, causal ones with small blocks.

The GELU and layer-norm kernels take their arrays in pieces: under ``tile_limits`` small
inputs span several (finite differences and torch), and at full size the kernels, a piece
per core, equal the textbook pairs (bit for bit, but for layer norm's sums over rows).

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

from numpy_attention import functional as F
from numpy_attention import kernels
from numpy_attention.kernels.schedule import PARALLEL_MIN_SCORES, PIECE_BYTES, tile_limits

from ..report import Report
from ..suite import gelu_target, layer_norm_target
from ..targets import Entry, attention_target, mha_target, sdpa_module_target
from .common import as_tier
from .edges import EXACT, agreement_rows, own_check_entry

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


def in_pieces(target: Any, piece_bytes: int) -> Any:
    """Under tile_limits(bytes=piece_bytes): the GELU and layer-norm kernels take a few elements or rows at a time."""
    return as_tier(target, context=functools.partial(tile_limits, bytes=piece_bytes))


def kernels_at_full_size_check(dtype: np.dtype, fast: bool) -> Report:
    """The GELU and layer-norm kernels against their textbook pairs, empty, small and a piece per core.

    Elementwise or row by row, so bit for bit; but layer norm's ``dweight`` and ``dbias``,
    whose sums over rows the kernel takes piece by piece (to float64 rounding).
    """
    rng = np.random.default_rng(84)
    rows = []
    for size in (0, 1000, PARALLEL_MIN_SCORES + 12345):
        x, dout = 3 * rng.standard_normal(size), rng.standard_normal(size)
        for approximate in ("none", "tanh"):
            out, cache = kernels.gelu_forward(x, approximate)
            expected, textbook_cache = F.gelu_forward(x, approximate)
            rows += agreement_rows(f"gelu, {size} elements, {approximate}", ("output", "dx"),
                                   (out, kernels.gelu_backward(dout, cache)),
                                   (expected, F.gelu_backward(dout, textbook_cache)), EXACT, 0.0)
    # No rows; a few; many rows in many pieces; one row longer than a piece (a piece per row).
    for shape in ((0, 7), (3, 5), (PARALLEL_MIN_SCORES // 64 + 37, 64), (3, PIECE_BYTES // 8 + 5)):
        x, dout = 3 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
        weight, bias = rng.standard_normal((2, shape[-1]))
        out, cache = kernels.layer_norm_forward(x, weight, bias)
        expected, textbook_cache = F.layer_norm_forward(x, weight, bias)
        label = f"layer_norm, {shape[0]} x {shape[1]}"
        (dx, dweight, dbias), (tx, tweight, tbias) = (kernels.layer_norm_backward(dout, cache),
                                                      F.layer_norm_backward(dout, textbook_cache))
        rows += agreement_rows(label, ("output", "x_hat", "rstd", "dx"),
                               (out, cache.x_hat, cache.rstd, dx),
                               (expected, textbook_cache.x_hat, textbook_cache.rstd, tx), EXACT, 0.0)
        rows += agreement_rows(label, ("dweight", "dbias"), (dweight, dbias), (tweight, tbias), 1e-12, 1e-12)
    return Report(title="kernels.gelu and kernels.layer_norm against the textbook pairs at full size", rows=rows,
                  method="bit for bit (sums over rows: to 1e-12)", dtype="float64", atol=EXACT, rtol=0.0,
                  labels=("kernel", "textbook"))


# Rows of 5 float64 features (40 bytes): 48 bytes make one row a piece, 96 two. GELU: 3 elements a piece.
ENTRIES += [
    Entry("tiles/layer_norm/kernel-pieces", lambda dt: in_pieces(layer_norm_target(dt, (2, 3, 5), pair=kernels), 96)),
    Entry("tiles/layer_norm/kernel-no-bias", lambda dt: in_pieces(
        layer_norm_target(dt, (7, 5), bias=False, pair=kernels), 48)),
    Entry("tiles/layer_norm/kernel-no-affine", lambda dt: in_pieces(
        layer_norm_target(dt, (4, 5), weight=False, bias=False, pair=kernels), 96)),
    *[Entry(f"tiles/gelu/kernel-pieces-{approximate}", lambda dt, approximate=approximate: in_pieces(
        gelu_target(dt, approximate, pair=kernels), 24)) for approximate in ("none", "tanh")],
    own_check_entry("tiles/kernels/gelu-layer-norm-full-size", kernels_at_full_size_check),
]

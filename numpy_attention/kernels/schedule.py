"""How the work is cut and run: tiles of query rows, chunks of heads, blocks of products, cores.

The math is in :mod:`dense`, :mod:`flash` and :mod:`linear` (and, plainly, in the textbook
pairs of :mod:`numpy_attention.functional`); this module only decides which slices of it
run together and where: the one scheduling layer of the kernels. A tile is a few heads' rows of scores that
stay in a core's cache through all the passes over them (the dense kernel's :func:`query_tiles`, the
flash kernel's blocks of :func:`block_shape` and the key tiles :func:`key_tiles` visits); chunks of heads, and
blocks of a large product (:func:`matmul`), are the units that run on the cores,
each writing only its own slices of the outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from ..validation import check_positive_int

# The attention runs one tile at a time: a few heads' rows of scores that stay in the core's
# cache from the product Q K^T through the softmax's passes to the product with V, instead of
# streaming the whole (..., L, T) array through memory once per pass. A tile spans several
# heads when they are short, so that NumPy's per-call cost is paid once for all of them.
# At most 256 rows and 2 MiB, a per-core L2 cache (docs/performance.md, "Row tiles kept in cache").
TILE_ROWS = 256
TILE_BYTES = 2 << 20
# Causal tiles stop at the key of their last query, so more tiles skip more of the masked
# upper triangle: with T tiles a causal call computes (T + 1) / 2T of the scores.
CAUSAL_TILE_ROWS = 64
# Chunks of heads per call, at least (when there are that many heads): enough to share between cores
# (two each on two), and no more: each NumPy call of a chunk then covers more heads.
MIN_CHUNKS = 4

# Smaller tiles for the current context (see tile_limits): (rows, bytes), None where the constant rules.
_tile_limits: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "tile_limits", default=(None, None)
)


@contextlib.contextmanager
def tile_limits(rows: int | None = None, bytes: int | None = None) -> Iterator[None]:  # noqa: A002 - as TILE_BYTES
    """Cap the dense kernel's tiles at ``rows`` query rows and ``bytes`` of scores, within the ``with`` block.

    For tests and ``python -m gradcheck``: small inputs then span several tiles
    (and chunks of heads), so a tile-boundary bug shows on a few numbers. The
    results do not depend on the tile sizes (up to rounding); only the speed does.
    The caps can only lower ``TILE_ROWS`` / ``TILE_BYTES`` (and ``CAUSAL_TILE_ROWS``).
    ``bytes`` also caps the pieces of the GELU and layer-norm kernels (:func:`pieces`).
    ``rows`` also caps both sides of the flash kernel's default ``block_size``
    (a ``block_size`` passed to it is used as given), so that the modules, which
    cannot pass one, run small tiles too.
    They hold in the calling thread's context, and in the worker threads that run
    its chunks (:func:`run_chunks` hands its context over); other threads are not
    affected, and nested blocks restore the outer caps on exit.
    """
    for value, name in ((rows, "rows"), (bytes, "bytes")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"tile_limits: {name} must be a positive int or None; got {value!r}")
    token = _tile_limits.set((rows, bytes))
    try:
        yield
    finally:
        _tile_limits.reset(token)


def tile_row_limit() -> int | None:
    """The ``rows`` of an enclosing :func:`tile_limits`, or None."""
    return _tile_limits.get()[0]


def tile_rows_and_bytes() -> tuple[int, int]:
    """The tile caps in force: ``TILE_ROWS`` and ``TILE_BYTES``, lowered by an enclosing :func:`tile_limits`."""
    rows, nbytes = _tile_limits.get()
    return min(TILE_ROWS, rows or TILE_ROWS), min(TILE_BYTES, nbytes or TILE_BYTES)


def query_tiles(num_queries: int, num_keys: int, itemsize: int, causal: bool) -> list[tuple[slice, slice]]:
    """(query rows, keys they attend to) for each tile of the (L, T) scores.

    With the top-left causal mask query i sees keys j <= i, so a causal tile
    needs only the keys up to its last query: the masked upper triangle is
    never computed (its weights are 0).
    """
    tile_rows, tile_bytes = tile_rows_and_bytes()
    rows = max(1, min(num_queries, tile_rows, tile_bytes // max(1, num_keys * itemsize)))
    if causal:
        rows = min(rows, CAUSAL_TILE_ROWS)
    tiles = []
    for start in range(0, num_queries, rows):
        stop = min(start + rows, num_queries)
        tiles.append((slice(start, stop), slice(0, min(stop, num_keys) if causal else num_keys)))
    return tiles


# Heads are independent, and NumPy's element-wise ops run on one core. Running the k/v heads
# on all cores, each with a one-thread BLAS, keeps every core busy; OpenBLAS splitting each
# small per-head product over its threads instead spends much of its time handing work over.
# Capping BLAS at one thread needs threadpoolctl (optional): without it the heads run in turn.
PARALLEL_MIN_SCORES = 1 << 18  # smaller calls are too short to pay for starting threads
_parallel_lock = threading.Lock()


# Cores to plan blocks of a product for (the actual threads: BLAS's own thread count, see one_thread_blas).
MAX_WORKERS = os.cpu_count() or 1


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


def blas_threads() -> int:
    """How many threads BLAS runs (1 without threadpoolctl, which reads it)."""
    controller = _blas_controller()
    return 1 if controller is None else max((lib.num_threads for lib in controller.lib_controllers), default=1)


def one_thread_blas() -> tuple[int, Any]:
    """(BLAS threads, a context that caps BLAS at one thread), or (1, None) if that cannot be had.

    threadpoolctl applies the cap when the context is made, not when it is entered: make
    one only to enter it at once.
    """
    threads = blas_threads()
    return (threads, _blas_controller().limit(limits=1)) if threads > 1 else (1, None)


def for_each_chunk(task: Callable[[tuple], None], chunks: list[tuple], num_scores: int) -> None:
    """Run ``task(chunk)`` for every chunk of heads: on as many cores as BLAS has threads, when worthwhile."""
    run_chunks(task, chunks, num_scores >= PARALLEL_MIN_SCORES)


def run_chunks(task: Callable[[Any], None], chunks: list, parallel: bool) -> None:
    """Run ``task(chunk)`` for every chunk, on a one-thread BLAS per core when ``parallel``.

    Each task writes only its own slices of the outputs, so the tasks need no
    locks and the result does not depend on how they are scheduled. The lock
    keeps two concurrent callers from both capping BLAS (and restoring it in
    the wrong order): the second one runs its chunks in turn.
    """
    workers, cap = 1, None
    if parallel and len(chunks) > 1 and _parallel_lock.acquire(blocking=False):
        workers, cap = one_thread_blas()  # made under the lock: only its holder caps BLAS
        if cap is None:
            _parallel_lock.release()
    if cap is None:
        for chunk in chunks:
            task(chunk)
        return
    try:
        with cap:
            pending = iter(list(chunks))  # shared: each next() hands one chunk to one thread

            def drain() -> None:
                for chunk in pending:
                    task(chunk)

            # The caller drains too, beside workers - 1 helpers, each in a copy of the caller's
            # context, so that tile_limits reaches them.
            pool = _thread_pool(workers - 1)
            helpers = [pool.submit(contextvars.copy_context().run, drain) for _ in range(workers - 1)]
            try:
                drain()
            finally:
                for helper in helpers:
                    helper.result()  # waits, and re-raises a helper's exception here
    finally:
        _parallel_lock.release()


# (process id, workers, pool): the threads outlive a call, since starting them costs more than a
# small product takes. A forked child has none of its parent's threads, so it starts its own pool.
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads (called under ``_parallel_lock``)."""
    global _pool
    if _pool is None or _pool[:2] != (os.getpid(), workers):
        if _pool is not None and _pool[0] == os.getpid():
            _pool[2].shutdown(wait=False)
        _pool = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="numpy_attention"))
    return _pool[2]


# The elementwise and row-wise kernels (GELU, layer norm) take their arrays this many bytes at a
# time: a piece's passes stay in a core's 2 MiB L2 cache, and a core takes the next piece when it
# is done with one, so that neither waits for the other. The textbook erf's chunk is as large.
PIECE_BYTES = 1 << 19


def pieces(count: int, item_bytes: int) -> list[slice]:
    """Consecutive slices of range(count), PIECE_BYTES of items each (at least one; the last may be shorter).

    An enclosing :func:`tile_limits` with ``bytes`` lowers PIECE_BYTES (small inputs in several pieces).
    """
    piece_bytes = min(PIECE_BYTES, tile_rows_and_bytes()[1])
    step = max(1, piece_bytes // max(1, item_bytes))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)] or [slice(0, 0)]


# Products of at least this many multiply-adds share their rows between the cores.
PARALLEL_MIN_PRODUCT = 1 << 22


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, a block of the work on every core, each with a one-thread BLAS.

    BLAS would split a large product over its own threads, but those spin for a
    while after each call (OpenBLAS: about 0.1 s), in the time the attention runs
    its heads on threads of its own (one-thread BLAS each): both then compete for
    the same cores. Splitting the product here keeps all the work on one set of
    threads. See :func:`matmuls` for how it is split.
    """
    return matmuls([(a, b)])[0]


def matmuls(products: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """``[a @ b for a, b in products]`` for 2-D arrays, all at once: their blocks share the cores.

    Independent products (a linear layer's dx and dW) run side by side, each cut into
    as few blocks as leave one per core, since a longer product runs BLAS faster. A
    product's rows are split; or, when its inner dimension is the longest (the weight
    gradient dY^T X sums over every batch row), that dimension, each block summing its
    share before the shares are added.
    """
    if sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b in products) < PARALLEL_MIN_PRODUCT:
        return [a @ b for a, b in products]
    per_product = max(1, -(-MAX_WORKERS // len(products)))
    tasks, results = [], []
    for a, b in products:
        rows, inner = a.shape
        split_inner = inner > rows
        split = inner if split_inner else rows
        step = max(1, -(-split // per_product))
        blocks = [slice(start, min(start + step, split)) for start in range(0, split, step)]
        if split_inner and len(blocks) > 1:
            out = np.empty((len(blocks), rows, b.shape[1]), dtype=np.result_type(a, b))
            tasks += [(a[:, block], b[block], out[i]) for i, block in enumerate(blocks)]
        else:
            out = np.empty((rows, b.shape[1]), dtype=np.result_type(a, b))
            tasks += [(a[block], b, out[block]) for block in blocks]
        results.append(out)
    run_chunks(lambda task: np.matmul(task[0], task[1], out=task[2]), tasks, True)
    return [out.sum(axis=0) if out.ndim == 3 else out for out in results]


# A model's batch is split into shards of rows, one per core, each running the whole model on its
# rows with a one-thread BLAS (data parallelism): a core's long products then overlap the other
# core's element-wise passes, which on their own scale poorly across threads (each NumPy call
# retakes the GIL). Worthwhile from this many (rows x positions x width) activations.
PARALLEL_MIN_ACTIVATIONS = 1 << 18


def batch_shards(batch: int, activations: int) -> list[slice]:
    """Consecutive slices of range(batch), one per BLAS thread (at most one row each), or [slice(0, batch)].

    One slice when BLAS runs one thread (or threadpoolctl, which caps it, is missing: see
    :func:`one_thread_blas`), or for fewer than PARALLEL_MIN_ACTIVATIONS activations.
    """
    workers = min(blas_threads(), batch)
    if workers < 2 or activations < PARALLEL_MIN_ACTIVATIONS:
        return [slice(0, batch)]
    bounds = [batch * i // workers for i in range(workers + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def attention_chunks(batch: tuple, heads: tuple, tiles: list, num_keys: int, itemsize: int) -> list[tuple]:
    """The units of work: (*batch index, slice of k/v heads), each a few heads of one batch entry.

    A chunk holds as many heads as fit in TILE_BYTES with the first tile's rows, but no
    more than leaves MIN_CHUNKS chunks to share between the cores. It holds one head when
    a tile is part of a head's rows and all its keys: that tile is contiguous in one head,
    not across heads. ``heads`` is (Hkv, G).
    """
    num_kv_heads, group = heads
    rows, keys = (tiles[0][0].stop - tiles[0][0].start, tiles[0][1].stop) if tiles else (1, num_keys)
    fits = max(1, tile_rows_and_bytes()[1] // max(1, group * rows * num_keys * itemsize))
    if len(tiles) > 1 and keys == num_keys:
        fits = 1
    per_chunk = max(1, min(fits, num_kv_heads, -(-math.prod(batch) * num_kv_heads // MIN_CHUNKS)))
    return [
        (*index, slice(start, min(start + per_chunk, num_kv_heads)))
        for index in np.ndindex(*batch)
        for start in range(0, num_kv_heads, per_chunk)
    ]


# The flash kernel's tiles: (query rows, keys) blocks that fit a core's cache, and the key tiles a row tile visits.

# The cache a tile should fit in: 2 MiB, a per-core L2 on current x86 and ARM
# laptops (1.25-2 MiB; this machine has 2 MiB per core).
TILE_CACHE_BYTES = 2 * 1024 * 1024


def default_block_size(dtype: np.dtype, head_dim: int) -> tuple[int, int]:
    """(query rows, keys) of the default tile: the largest whose working set fits in ``TILE_CACHE_BYTES``.

    The tile is twice as tall as it is wide, keys a power of two (at least 32).
    Its working set, per head, is two (rows, keys) arrays (the scores, turned
    into probabilities in place, and their gradient, turned into dS in place),
    three (rows, E) slices (Q, dO, the dQ accumulator) and four (keys, E)
    slices (K, V and their gradients' terms). For E = 64 that gives 512 x 256
    in float32 (1.6 MiB) and 256 x 128 in float64 (1.1 MiB).

    Why tall: a row block pays a fixed cost (its scaled queries, D, the final
    division) once for all its key tiles, and the backward's dK_J += dS^T Q_I
    runs over the rows, so more rows make that product longer and its
    read-modify-write of dK_J, dV_J rarer (docs/performance.md, "Tile shapes",
    has the timings). Smaller tiles pay the Python loop's fixed cost per tile
    on less work, hence the floor of 32. Heads and batch entries are not
    counted: the matmuls, where the time goes, work on one head at a time.
    """
    itemsize = np.dtype(dtype).itemsize

    def fits(keys: int) -> bool:
        rows = 2 * keys
        return (2 * rows * keys + 3 * rows * head_dim + 4 * keys * head_dim) * itemsize <= TILE_CACHE_BYTES

    keys = 32
    while fits(2 * keys):
        keys *= 2
    return 2 * keys, keys


def block_shape(block_size: Any, dtype: np.dtype, head_dim: int) -> tuple[int, int]:
    """``block_size`` as (query rows, keys): an int is a square tile, None the default."""
    if block_size is None:
        rows, keys = default_block_size(dtype, head_dim)
        limit = tile_row_limit()  # schedule.tile_limits(rows=...): small tiles for the checks
        return (rows, keys) if limit is None else (min(rows, limit), min(keys, limit))
    if isinstance(block_size, tuple) and len(block_size) == 2:
        return check_positive_int(block_size[0], "block_size[0]"), check_positive_int(block_size[1], "block_size[1]")
    size = check_positive_int(block_size, "block_size")
    return size, size


def tiles(length: int, block_size: int) -> Iterator[slice]:
    """Consecutive slices of ``block_size`` covering range(length); the last may be shorter."""
    for start in range(0, length, block_size):
        yield slice(start, min(start + block_size, length))


def finite_tiles(arrays: tuple[np.ndarray, ...], length: int, block_size: int) -> list[bool]:
    """For each tile of axis -2, whether every one of ``arrays`` holds only finite numbers there."""
    return [all(np.isfinite(x[..., tile, :]).all() for x in arrays) for tile in tiles(length, block_size)]


def key_tiles(
    rows: slice, num_keys: int, block_size: int, is_causal: bool, finite_rows: bool, finite_keys: list[bool],
    band: tuple[int, int] | None = None,
) -> Iterator[slice]:
    """The key tiles a row tile must visit: with ``is_causal``, none wholly above the diagonal.

    Query i sees keys j <= i, so a key tile starting at or after ``rows.stop``
    is entirely masked; it is skipped, not computed and masked. Unless a
    number there is not finite: torch adds the mask (-inf) to the scores, so a
    NaN or inf in the rows' queries (or output and its gradient) or in the
    tile's keys or values still spreads NaN, and such a tile is computed to do
    the same.
    """
    # With band = (first, last), the key positions some query of the row tile may see (key_band,
    # query_offset and window included), a tile wholly outside it is skipped likewise.
    for cols, finite in zip(tiles(num_keys, block_size), finite_keys):
        if finite_rows and finite:
            if band is None and is_causal and cols.start >= rows.stop:
                continue
            if band is not None and (cols.stop - 1 < band[0] or cols.start > band[1]):
                continue
        yield cols

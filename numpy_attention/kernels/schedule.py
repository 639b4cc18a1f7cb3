"""How the work is cut and run: tiles of query rows, chunks of heads, blocks of products, cores.

The math is in :mod:`dense`, :mod:`flash` and :mod:`linear` (and, plainly, in the textbook
pairs of :mod:`numpy_attention.functional`); this module only decides which slices of it
run together and where: the one scheduling layer of the kernels. A tile is a few heads' rows of scores that
stay in a core's cache through all the passes over them; chunks of heads, and
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
# Chunks of heads per call, at least (when there are that many heads): enough to share between cores.
MIN_CHUNKS = 8

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


def one_thread_blas() -> tuple[int, Any]:
    """(BLAS threads, a context that caps BLAS at one thread), or (1, None) if that cannot be had."""
    controller = _blas_controller()
    if controller is None:
        return 1, None
    threads = max((lib.num_threads for lib in controller.lib_controllers), default=1)
    return (threads, controller.limit(limits=1)) if threads > 1 else (1, None)


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
    workers, cap = one_thread_blas() if parallel and len(chunks) > 1 else (1, None)
    if cap is None or not _parallel_lock.acquire(blocking=False):
        for chunk in chunks:
            task(chunk)
        return
    try:
        with cap, ThreadPoolExecutor(workers) as pool:
            # Each task runs in a copy of the caller's context, so that tile_limits reaches the workers.
            futures = [pool.submit(contextvars.copy_context().run, task, chunk) for chunk in chunks]
            for future in futures:
                future.result()  # re-raises a task's exception here
    finally:
        _parallel_lock.release()


# Products of at least this many multiply-adds share their rows between the cores.
PARALLEL_MIN_PRODUCT = 1 << 22


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, a block of the work on every core, each with a one-thread BLAS.

    BLAS would split a large product over its own threads, but those spin for a
    while after each call (OpenBLAS: about 0.1 s), in the time the attention runs
    its heads on threads of its own (one-thread BLAS each): both then compete for
    the same cores. Splitting the product here keeps all the work on one set of
    threads. The rows of the result are split; or, when the inner dimension is the
    longest (the weight gradient dY^T X sums over every batch row), the inner
    dimension, each core summing its share before the shares are added.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    if rows * inner * cols < PARALLEL_MIN_PRODUCT:
        return a @ b
    split = inner if inner > rows else rows
    step = max(1, -(-split // MAX_WORKERS))
    blocks = [slice(start, min(start + step, split)) for start in range(0, split, step)]
    if inner > rows and len(blocks) > 1:
        shares = np.empty((len(blocks), rows, cols), dtype=np.result_type(a, b))
        run_chunks(lambda i: np.matmul(a[:, blocks[i]], b[blocks[i]], out=shares[i]), range(len(blocks)), True)
        return shares.sum(axis=0)
    out = np.empty((rows, cols), dtype=np.result_type(a, b))
    run_chunks(lambda block: np.matmul(a[block], b, out=out[block]), blocks, True)
    return out


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

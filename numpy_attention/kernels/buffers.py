"""Recycled memory for the attention weights, the one (..., L, T) array each call allocates.

A fresh array that large costs more than the arithmetic suggests: the operating
system maps and zeroes each of its pages at the first write (docs/performance.md,
"Recycled weights memory", has the cost). In a training loop the
previous step's weights are garbage by the time the next step asks for its own,
so their memory, already mapped, can be handed out again.

A buffer is free when nothing but this module refers to it: every array made
from it (the weights, any view or slice of them) holds a reference to it through
``ndarray.base``, and the caches hold the weights. Each allocation drops the
oldest free buffers until at most ``MAX_IDLE_BYTES`` would stay idle; set it to 0
to turn the recycling off. Allocations are serialised by a lock, so threads may
call the attention concurrently.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MAX_IDLE_BYTES = 256 << 20
# Smaller arrays are served well by malloc's own free lists.
MIN_BYTES = 1 << 20

_buffers: list[np.ndarray] = []  # 1-D uint8 arrays, oldest first
_lock = threading.Lock()


def _references(index: int) -> int:
    return sys.getrefcount(_buffers[index])


def _free_reference_count() -> int:
    """What ``_references`` reads for a buffer that only the list holds, on this Python."""
    _buffers.append(np.empty(0, np.uint8))
    try:
        return _references(len(_buffers) - 1)
    finally:
        _buffers.pop()


_FREE = _free_reference_count()


def empty(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, in a free recycled buffer of the same size when there is one."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if not MIN_BYTES <= nbytes <= MAX_IDLE_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        free = [index for index in range(len(_buffers)) if _references(index) == _FREE]
        match = next((index for index in free if _buffers[index].nbytes == nbytes), None)
        if match is None:
            # Once this new buffer is free too, the idle ones must still fit the budget: drop the oldest.
            idle = sum(_buffers[index].nbytes for index in free)
            dropped = set()
            for index in free:
                if idle + nbytes <= MAX_IDLE_BYTES:
                    break
                idle -= _buffers[index].nbytes
                dropped.add(index)
            _buffers[:] = [buffer for index, buffer in enumerate(_buffers) if index not in dropped]
            _buffers.append(np.empty(nbytes, np.uint8))
            match = len(_buffers) - 1
        # Made under the lock: from here on the view holds the buffer, which is no longer free.
        return _buffers[match].view(dtype).reshape(shape)

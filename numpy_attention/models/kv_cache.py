"""The keys and values a GPT keeps while it decodes, one pair of buffers per layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class KVCache:
    """Per layer, keys and values (batch, n_kv_head, block_size, head_dim); positions ``[:length]`` are filled.

    Preallocated once for ``block_size`` positions: a decoding step writes one
    position in place instead of concatenating (and copying) the whole history.
    """

    keys: list[np.ndarray]
    values: list[np.ndarray]
    length: int
    batch: int

    @classmethod
    def empty(cls, model: Any, batch: int) -> KVCache:
        shape = (batch, model.n_kv_head, model.block_size, model.n_embd // model.n_head)
        keys = [np.zeros(shape, dtype=model.dtype) for _ in range(model.n_layer)]
        values = [np.zeros(shape, dtype=model.dtype) for _ in range(model.n_layer)]
        return cls(keys, values, 0, batch)

"""The attention pairs by name, straight from the library's registry (``layers.ATTENTION_IMPLS``).

Tests parametrised over ``IMPLS`` run on the naive and the tiled pair alike; a
pair missing from the registry is an error, never a skip.
"""

from __future__ import annotations

from typing import Callable

from numpy_attention.layers import ATTENTION_IMPLS

IMPLS = ["naive", "flash"]


def attention_impl(name: str) -> tuple[Callable, Callable]:
    """(forward, backward) of the named pair; forward takes ``block_size`` only for "flash"."""
    return ATTENTION_IMPLS[name]

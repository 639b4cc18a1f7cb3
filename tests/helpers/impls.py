"""The attention pairs by name, straight from the library's registry (``numpy_attention.attention_impls``).

Tests parametrised over ``IMPLS`` run on every implementation alike, kernels and
textbook pairs; a pair missing from the registry is an error, never a skip.
"""

from __future__ import annotations

from typing import Callable

from numpy_attention.attention_impls import ATTENTION_IMPLS

IMPLS = ["dense", "flash", "textbook", "textbook-flash"]
TILED_IMPLS = ["flash", "textbook-flash"]


def attention_impl(name: str) -> tuple[Callable, Callable]:
    """(forward, backward) of the named pair; forward takes ``block_size`` only for the tiled ones."""
    return ATTENTION_IMPLS[name]

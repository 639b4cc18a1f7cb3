"""The attention pairs by name: "naive" always, "flash" once the tiled pair is in the library.

Tests parametrised over ``IMPLS`` run on both; for "flash" they skip, saying
why, while ``numpy_attention.functional`` has no ``flash_attention_*``.
"""

from __future__ import annotations

from typing import Callable

import pytest

from numpy_attention import functional as F

IMPLS = ["naive", "flash"]


def attention_impl(name: str) -> tuple[Callable, Callable]:
    """(forward, backward) of the named pair; forward takes ``block_size`` only for "flash"."""
    if name == "naive":
        return F.attention_forward, F.attention_backward
    forward = getattr(F, "flash_attention_forward", None)
    backward = getattr(F, "flash_attention_backward", None)
    if forward is None or backward is None:
        pytest.skip("flash_attention_forward / flash_attention_backward are not in numpy_attention.functional yet")
    return forward, backward

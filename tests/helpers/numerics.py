"""Shared test helpers: a scale-aware relative error, seeded upstream gradients, the optional torch."""

from __future__ import annotations

import numpy as np
import pytest


def rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| over the larger of the two magnitudes (0 when both are 0)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    if actual.size == 0:
        return 0.0
    scale = max(np.abs(actual).max(), np.abs(expected).max())
    if scale == 0:
        return 0.0
    return float(np.abs(actual - expected).max() / scale)


def random_like(rng: np.random.Generator, shape: tuple, dtype=np.float64) -> np.ndarray:
    """Standard-normal data: an upstream gradient that weighs every element differently."""
    return rng.standard_normal(shape).astype(dtype)


def require_torch():
    """Import torch or skip the test, saying what to install."""
    return pytest.importorskip(
        "torch", reason="torch is not installed: pip install 'numpy_attention[torch]' to compare with it"
    )

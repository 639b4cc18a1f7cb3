"""Rotary position embedding (RoPE), forward and backward, in both feature layouts.

Each pair of features of a row at position p is rotated by the angle
``p * base**(-2i/D)`` of its pair index i. Which features form pair i is the
layout: ``interleaved=False`` pairs feature i with i + D/2 (Hugging Face's
``rotate_half``), ``interleaved=True`` pairs 2i with 2i + 1 (Meta's Llama
code, torchtune).

See docs/derivations.md, section "RoPE".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, as_positions, check_bool, check_cache, check_dout, check_real


class RopeCache(NamedTuple):
    """What the RoPE backward needs: the angles' cosines and sines (L, D/2) and the layout."""

    cos: np.ndarray
    sin: np.ndarray
    interleaved: bool
    shape: tuple
    dtype: np.dtype


def rope_angles(positions: np.ndarray, dim: int, base: float) -> np.ndarray:
    """``theta[l, i] = positions[l] * base**(-2i/dim)`` (L, dim/2), in float64 whatever the data's dtype.

    The angle of a position of 1e5 is 1e5 radians: float32 would keep 3 decimals
    of it, so the angles (not the rotated data) are always float64.
    """
    inverse_frequency = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)  # (D/2,)
    return positions.astype(np.float64)[:, None] * inverse_frequency[None, :]  # (L, D/2)


def split_pairs(x: np.ndarray, interleaved: bool) -> tuple[np.ndarray, np.ndarray]:
    """The two members (x1, x2) of every pair, each (..., L, D/2): halves, or even and odd features."""
    half = x.shape[-1] // 2
    return (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :half], x[..., half:])


def join_pairs(x1: np.ndarray, x2: np.ndarray, interleaved: bool) -> np.ndarray:
    """The inverse of :func:`split_pairs`: (..., L, D/2) twice back to (..., L, D)."""
    if interleaved:
        return np.stack([x1, x2], axis=-1).reshape(*x1.shape[:-1], 2 * x1.shape[-1])
    return np.concatenate([x1, x2], axis=-1)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool) -> np.ndarray:
    """Rotate each pair (x1, x2) by the angle whose cosine and sine are given (L, D/2)."""
    x1, x2 = split_pairs(x, interleaved)
    out1 = x1 * cos - x2 * sin
    out2 = x2 * cos + x1 * sin
    return join_pairs(out1, out2, interleaved)


def rope_forward(
    x: np.ndarray, positions: np.ndarray | None = None, *, base: float = 10000.0, interleaved: bool = False
) -> tuple[np.ndarray, RopeCache]:
    """Rotary position embedding of queries or keys.

    For pair i of the row at position p, with angle ``theta = p * base**(-2i/D)``::

        out1 = x1 cos(theta) - x2 sin(theta)
        out2 = x2 cos(theta) + x1 sin(theta)

    Parameters
    ----------
    x : ndarray (..., L, D), D even; float32 or float64 (integers become float64)
    positions : integer ndarray (L,), optional
        The position of each of the L rows (default 0, 1, ..., L - 1), shared by
        every leading batch/head index. Any integers: a KV cache's new queries
        start at the cache's length, and negative positions rotate backwards
        (RoPE depends on position differences only, so a shift of every
        position changes no attention score).
    base : float
        The wavelength base (10000 in Llama 2, 500000 in Llama 3); positive.
    interleaved : bool
        False: feature i pairs with i + D/2 (Hugging Face's ``rotate_half``);
        True: features 2i and 2i + 1 (Meta's Llama, torchtune).

    Returns
    -------
    out : ndarray (..., L, D), the dtype of ``x``
    cache : RopeCache
    """
    x = as_float_array(x, "x")
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(f"x must be (..., L, D) with an even number D of features; got shape {x.shape}")
    base = check_real(base, "base")
    if base <= 0:
        raise ValueError(f"base must be a positive real number (the wavelength base, e.g. 10000.0); got {base!r}")
    interleaved = check_bool(interleaved, "interleaved")
    length, dim = x.shape[-2:]
    positions = np.arange(length) if positions is None else as_positions(positions, "positions", length)
    theta = rope_angles(positions, dim, base)  # (L, D/2)
    cos, sin = np.cos(theta).astype(x.dtype), np.sin(theta).astype(x.dtype)
    out = rotate(x, cos, sin, interleaved)
    return out, RopeCache(cos, sin, interleaved, x.shape, x.dtype)


def rope_backward(dout: np.ndarray, cache: RopeCache) -> np.ndarray:
    """Gradient of RoPE: the rotation by minus the angle (a rotation's inverse is its transpose).

    Per pair, ``out = R(theta) x`` with R orthogonal, so ``dx = R(theta)^T dout = R(-theta) dout``::

        dx1 = dout1 cos(theta) + dout2 sin(theta)
        dx2 = dout2 cos(theta) - dout1 sin(theta)

    See docs/derivations.md, section "RoPE".
    """
    check_cache(cache, RopeCache, "rope_forward")
    dout = check_dout(dout, cache.shape, cache.dtype)
    dx = rotate(dout, cache.cos, -cache.sin, cache.interleaved)
    return dx

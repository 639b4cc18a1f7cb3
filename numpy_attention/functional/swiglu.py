"""The SwiGLU gate of Llama's MLP, ``silu(gate) * up``, forward and backward.

See docs/derivations.md, section "SwiGLU".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import as_float_array, check_cache, check_dout, same_dtype


class SwiGLUCache(NamedTuple):
    """What the backward needs: both inputs and sigmoid(gate)."""

    gate: np.ndarray
    up: np.ndarray
    sig: np.ndarray


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow: through ``exp(-|x|)``, which is at most 1."""
    with np.errstate(under="ignore"):  # exp(-|x|) underflows to 0 for |x| > ~745: sigmoid is then 0 or 1
        e = np.exp(-np.abs(x))
    positive = (x >= 0).astype(x.dtype)  # a blend, not np.where: no branch per element (see erf._blend)
    return positive / (1.0 + e) + (1.0 - positive) * e / (1.0 + e)


def swiglu_forward(gate: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, SwiGLUCache]:
    """``out = silu(gate) * up`` with ``silu(g) = g * sigmoid(g)``, as ``F.silu(gate) * up`` in torch.

    Parameters
    ----------
    gate, up : ndarray, the same shape (..., F)

    Returns
    -------
    out : ndarray (..., F)
    cache : SwiGLUCache
    """
    gate, up = as_float_array(gate, "gate"), as_float_array(up, "up")
    same_dtype([gate, up], ["gate", "up"])
    if gate.shape != up.shape:
        raise ValueError(f"gate and up must have the same shape; got {gate.shape} and {up.shape}")
    sig = sigmoid(gate)
    return gate * sig * up, SwiGLUCache(gate, up, sig)


def swiglu_backward(dout: np.ndarray, cache: SwiGLUCache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``silu(gate) * up``, elementwise, with ``s = sigmoid(gate)``::

        dup   = dout * gate * s                          (..., F)
        dgate = dout * up * s * (1 + gate * (1 - s))     (..., F)   silu'(g) = s + g s (1 - s)

    See docs/derivations.md, section "SwiGLU".
    """
    check_cache(cache, SwiGLUCache, "swiglu_forward")
    gate, up, sig = cache
    dout = check_dout(dout, gate.shape, gate.dtype)
    dup = dout * gate * sig
    dgate = dout * up * sig * (1.0 + gate * (1.0 - sig))
    return dgate, dup

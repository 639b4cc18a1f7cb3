"""Normalization modules over the functional pairs: ``RMSNorm``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import functional as F
from .module import Module, check_float_dtype
from .validation import as_float_array, as_generator, check_bool, check_real, describe

__all__ = ["RMSNorm"]


def check_normalized_shape(normalized_shape: Any) -> tuple[int, ...]:
    """An int or a non-empty sequence of positive ints, as torch's ``normalized_shape``."""
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
    expected = "a positive int or a non-empty tuple of positive ints"
    if not isinstance(shape, Sequence) or not shape or any(
            isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) for n in shape):
        raise TypeError(f"normalized_shape must be {expected}; got {describe(normalized_shape)}")
    if any(n <= 0 for n in shape):
        raise ValueError(f"normalized_shape must be {expected}; got {tuple(shape)}")
    return tuple(int(n) for n in shape)


class RMSNorm(Module):
    """Root-mean-square normalization over the trailing ``normalized_shape`` axes, as ``torch.nn.RMSNorm``.

    ``y = x / sqrt(mean(x**2) + eps) * weight``, the mean over the last
    ``len(normalized_shape)`` axes; ``weight`` (``normalized_shape``) starts at ones
    and is absent with ``elementwise_affine=False``. Llama, Mistral and Gemma
    normalize with it; applied per head to q and k it is QK-norm (Qwen3, OLMo 2).
    ``eps`` defaults to 1e-6 (torch's ``eps=None`` means the dtype's machine
    epsilon). ``rng`` is accepted for a uniform signature: the initialisation
    draws nothing.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-6,
        elementwise_affine: bool = True,
        *,
        dtype: Any = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = check_normalized_shape(normalized_shape)
        self.eps = check_real(eps, "eps")
        if self.eps < 0:
            raise ValueError(f"eps must be a non-negative real number; got {eps!r}")
        self.elementwise_affine = check_bool(elementwise_affine, "elementwise_affine")
        self.dtype = check_float_dtype(dtype)
        as_generator(rng)
        if self.elementwise_affine:
            self.add_param("weight", np.ones(self.normalized_shape, dtype=self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(x, "x", dtype=self.dtype)
        count = len(self.normalized_shape)
        if x.shape[x.ndim - count:] != self.normalized_shape or x.ndim < count:
            raise ValueError(f"x must end in the normalized_shape {self.normalized_shape}; got shape {x.shape}")
        # The trailing axes flattened into one: the mean over them is the mean over the flat axis.
        flat = x.reshape(*x.shape[:x.ndim - count], math.prod(self.normalized_shape))
        weight = self.params.get("weight")
        out, self._cache = F.rms_norm_forward(flat, None if weight is None else weight.reshape(-1), self.eps)
        return out.reshape(x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self.saved_cache()
        dout = as_float_array(dout, "dout", dtype=self.dtype)
        shape = cache.x.shape[:-1] + self.normalized_shape
        if dout.shape != shape:
            raise ValueError(f"dout must have the forward output's shape {shape}; got {dout.shape}")
        dx, dweight = F.rms_norm_backward(dout.reshape(cache.x.shape), cache)
        if dweight is not None:
            self.accumulate("weight", dweight.reshape(self.normalized_shape))
        return dx.reshape(shape)

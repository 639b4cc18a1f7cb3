"""Modules of the transformer block: ``LayerNorm`` and ``GELU``, thin wrappers over their pairs."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import kernels
from .functional.gelu import APPROXIMATIONS
from .module import Module, check_float_dtype
from .validation import as_float_array, check_bool, check_choice, check_real, describe

__all__ = ["GELU", "LayerNorm"]


def _feature_count(normalized_shape: Any) -> int:
    """torch's ``normalized_shape`` for a normalization over the last axis: an int or a 1-tuple."""
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
    if isinstance(normalized_shape, (bool, np.bool_)) or not isinstance(shape, (tuple, list)):
        raise TypeError(f"normalized_shape must be an int or a 1-tuple of ints; got {describe(normalized_shape)}")
    if len(shape) != 1 or isinstance(shape[0], (bool, np.bool_)) or not isinstance(shape[0], numbers.Integral):
        raise ValueError(
            f"normalized_shape must be an int or a 1-tuple (this LayerNorm normalizes the last axis); "
            f"got {normalized_shape!r}"
        )
    if shape[0] <= 0:
        raise ValueError(f"normalized_shape must be positive; got {normalized_shape!r}")
    return int(shape[0])


class LayerNorm(Module):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm``.

    Params ``weight`` (ones) and ``bias`` (zeros), both (D,), when
    ``elementwise_affine``; ``bias=False`` drops the bias (nanoGPT's option).
    ``rng`` is accepted for a uniform module signature; the initialisation is deterministic.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: Any = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = (_feature_count(normalized_shape),)
        self.eps = check_real(eps, "eps")
        if self.eps < 0:
            raise ValueError(f"eps must be >= 0; got {eps!r}")
        self.elementwise_affine = check_bool(elementwise_affine, "elementwise_affine")
        use_bias = check_bool(bias, "bias")
        self.dtype = check_float_dtype(dtype)
        if self.elementwise_affine:
            self.add_param("weight", np.ones(self.normalized_shape, dtype=self.dtype))
            if use_bias:
                self.add_param("bias", np.zeros(self.normalized_shape, dtype=self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(x, "x", dtype=self.dtype)
        out, self._cache = kernels.layer_norm_forward(x, self.params.get("weight"), self.params.get("bias"), self.eps)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = kernels.layer_norm_backward(dout, self.saved_cache())
        if dweight is not None:
            self.accumulate("weight", dweight)
        if dbias is not None:
            self.accumulate("bias", dbias)
        return dx


class GELU(Module):
    """The GELU activation, as ``torch.nn.GELU(approximate=...)``; no parameters."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = check_choice(approximate, "approximate", APPROXIMATIONS)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = kernels.gelu_forward(x, self.approximate)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return kernels.gelu_backward(dout, self.saved_cache())

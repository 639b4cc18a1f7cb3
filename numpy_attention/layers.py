"""Thin modules over the functional pairs: ``Linear``, ``Embedding`` and ``ScaledDotProductAttention``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import functional as F
from . import kernels
from .attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL
from .module import Module, check_float_dtype
from .validation import (
    as_float_array,
    as_generator,
    check_bool,
    check_choice,
    check_index,
    check_positive_int,
    check_probability,
    check_real,
)


class Linear(Module):
    """``y = x W^T + b`` with torch's layout: ``weight`` (out, in), ``bias`` (out,).

    Initialised as ``torch.nn.Linear``: both drawn from U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dtype = check_float_dtype(dtype)
        rng = as_generator(rng)
        bound = 1.0 / math.sqrt(in_features)
        self.add_param("weight", rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype))
        if check_bool(bias, "bias"):
            self.add_param("bias", rng.uniform(-bound, bound, out_features).astype(self.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(x, "x", dtype=self.dtype)
        out, self._cache = kernels.linear_forward(x, self.params["weight"], self.params.get("bias"))
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = kernels.linear_backward(dout, self.saved_cache())
        self.accumulate("weight", dweight)
        if dbias is not None:
            self.accumulate("bias", dbias)
        return dx


class Embedding(Module):
    """A table of learned vectors looked up by index, as ``torch.nn.Embedding``.

    ``weight`` is (num_embeddings, embedding_dim), initialised N(0, 1) as in
    torch, with the ``padding_idx`` row (if any) zero and never updated by a
    gradient. ``forward(indices)`` takes an integer array (...) and returns
    (..., embedding_dim); ``backward(dout)`` accumulates into ``grads["weight"]``
    and returns None: indices have no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        dtype: Any = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.padding_idx = None if padding_idx is None else check_index(padding_idx, "padding_idx", num_embeddings)
        self.dtype = check_float_dtype(dtype)
        weight = as_generator(rng).standard_normal((num_embeddings, embedding_dim)).astype(self.dtype)
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0
        self.add_param("weight", weight)

    def forward(self, indices: np.ndarray) -> np.ndarray:
        out, self._cache = F.embedding_forward(indices, self.params["weight"], self.padding_idx)
        return out

    def backward(self, dout: np.ndarray) -> None:
        self.accumulate("weight", F.embedding_backward(dout, self.saved_cache()))


class ScaledDotProductAttention(Module):
    """Attention without parameters: ``forward(q, k, v) -> (out, weights)`` and its backward.

    Masks follow ``scaled_dot_product_attention`` (boolean True = may attend).
    Dropout acts in training mode only. ``impl`` names a pair of
    :mod:`numpy_attention.attention_impls`: "dense" (the kernel, default), "flash"
    (the tiled kernel), "textbook" or "textbook-flash" (the plain pairs).
    ``weights`` is None for the tiled pairs, which never form them.
    """

    def __init__(
        self,
        dropout: float = 0.0,
        scale: float | None = None,
        *,
        impl: str = DEFAULT_IMPL,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dropout = check_probability(dropout, "dropout")
        self.scale = check_real(scale, "scale", allow_none=True)
        self.impl = check_choice(impl, "impl", sorted(ATTENTION_IMPLS))
        self.rng = as_generator(rng)

    def forward(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        attn_mask: np.ndarray | None = None,
        is_causal: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        attention_forward, _ = ATTENTION_IMPLS[self.impl]
        dropout_p = self.dropout if self.training else 0.0
        out, self._cache = attention_forward(
            q, k, v, attn_mask, dropout_p, is_causal, self.scale, rng=self.rng
        )
        return out, getattr(self._cache, "weights", None)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, attention_backward = ATTENTION_IMPLS[self.impl]
        return attention_backward(dout, self.saved_cache())

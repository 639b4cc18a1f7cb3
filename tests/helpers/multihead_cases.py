"""Seeded configurations of MultiHeadAttention over every option, shared by the FD and torch tests.

A configuration is the module's options plus one call: input shapes, masks in
torch's MultiheadAttention convention (boolean True = not allowed), the
forward flags, and the mode. Masks always leave key 0 attendable, so no row is
fully masked (torch gives NaN there); the fully masked case has its own tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.numerics import rel_error
from numpy_attention import MultiHeadAttention


@dataclass
class MHACase:
    module: dict  # MultiHeadAttention keyword arguments
    batch: int | None  # None = unbatched input
    queries: int
    keys: int
    self_attention: bool = False
    mask_kind: str = "bool"  # the kind of every given mask: "bool" or "float"
    key_padding_mask: bool = False
    attn_mask: str | None = None  # None, "2d" (L, S) or "3d" (N * H, L, S)
    is_causal: bool = False  # with attn_mask "2d", that mask is the causal one
    need_weights: bool = True
    average_attn_weights: bool = True
    training: bool = False
    seed: int = 0
    name: str = field(default="")

    @property
    def embed_dim(self) -> int:
        return self.module["embed_dim"]

    @property
    def appended(self) -> int:
        return int(self.module.get("add_bias_kv", False)) + int(self.module.get("add_zero_attn", False))

    def layout(self, seq: int, features: int) -> tuple:
        if self.batch is None:
            return (seq, features)
        if self.module.get("batch_first", True):
            return (self.batch, seq, features)
        return (seq, self.batch, features)

    def build(self):
        """(module, inputs, forward kwargs, dout); inputs is (x,) for self-attention."""
        rng = np.random.default_rng(self.seed)
        module = MultiHeadAttention(**self.module, rng=np.random.default_rng(self.seed + 1))
        module.train(self.training)
        # Non-zero biases, so that a wrong bias gradient cannot hide behind zeros.
        for name, value in module.params.items():
            if name.endswith("bias") or name.startswith("bias_"):
                value[...] = rng.standard_normal(value.shape)
        embed, kdim, vdim = self.embed_dim, self.module.get("kdim") or self.embed_dim, self.module.get("vdim")
        query = rng.standard_normal(self.layout(self.queries, embed))
        if self.self_attention:
            inputs = (query,)
        else:
            key = rng.standard_normal(self.layout(self.keys, kdim))
            inputs = (query, key, rng.standard_normal(self.layout(self.keys, vdim or embed)))
        kwargs = {
            "need_weights": self.need_weights,
            "average_attn_weights": self.average_attn_weights,
            "is_causal": self.is_causal,
        }
        if self.key_padding_mask:
            shape = (self.keys,) if self.batch is None else (self.batch, self.keys)
            kwargs["key_padding_mask"] = self._mask(rng, shape)
        if self.attn_mask == "2d" and self.is_causal:
            causal = np.triu(np.ones((self.queries, self.keys), dtype=bool), k=1)
            kwargs["attn_mask"] = causal if self.mask_kind == "bool" else np.where(causal, -np.inf, 0.0)
        elif self.attn_mask == "2d":
            kwargs["attn_mask"] = self._mask(rng, (self.queries, self.keys))
        elif self.attn_mask == "3d":
            heads = self.module["num_heads"] * (self.batch or 1)
            kwargs["attn_mask"] = self._mask(rng, (heads, self.queries, self.keys))
        out_shape = self.layout(self.queries, embed)
        return module, inputs, kwargs, rng.standard_normal(out_shape)

    def _mask(self, rng: np.random.Generator, shape: tuple) -> np.ndarray:
        if self.mask_kind == "bool":
            mask = rng.random(shape) < 0.3
            mask[..., 0] = False
            return mask
        mask = rng.standard_normal(shape)
        mask[rng.random(shape) < 0.2] = -np.inf
        mask[..., 0] = rng.standard_normal(mask[..., 0].shape)
        return mask


def random_case(index: int, seed: int = 2024) -> MHACase:
    """Configuration ``index`` of the seeded grid: every option drawn independently."""
    rng = np.random.default_rng([seed, index])
    num_heads = int(rng.integers(1, 5))
    head_dim = int(rng.integers(1, 4))
    embed = num_heads * head_dim
    divisors = [d for d in range(1, num_heads) if num_heads % d == 0]
    num_kv_heads = int(rng.choice(divisors)) if divisors and rng.random() < 0.3 else num_heads
    kdim = None if rng.random() < 0.5 else int(rng.integers(1, 8))
    vdim = None if rng.random() < 0.5 else int(rng.integers(1, 8))
    dropout = float(rng.choice([0.1, 0.3, 0.5])) if rng.random() < 0.4 else 0.0
    module = {
        "embed_dim": embed, "num_heads": num_heads, "dropout": dropout,
        "bias": bool(rng.random() < 0.7), "add_bias_kv": bool(rng.random() < 0.4),
        "add_zero_attn": bool(rng.random() < 0.4), "kdim": kdim, "vdim": vdim,
        "batch_first": bool(rng.random() < 0.5), "num_kv_heads": num_kv_heads,
    }
    batch = None if rng.random() < 0.25 else int(rng.integers(1, 4))
    self_attention = kdim is None and vdim is None and rng.random() < 0.4
    queries = int(rng.integers(1, 6))
    keys = queries if self_attention else int(rng.integers(1, 7))
    attn_mask = rng.choice([None, "2d", "3d"], p=[0.4, 0.35, 0.25])
    is_causal = bool(rng.random() < 0.25) and attn_mask != "3d"
    return MHACase(
        module=module, batch=batch, queries=queries, keys=keys, self_attention=self_attention,
        mask_kind=str(rng.choice(["bool", "float"])), key_padding_mask=bool(rng.random() < 0.45),
        attn_mask=attn_mask, is_causal=is_causal, need_weights=bool(rng.random() < 0.7),
        average_attn_weights=bool(rng.random() < 0.5), training=bool(rng.random() < 0.75),
        seed=index, name=f"grid-{index}",
    )


EXACT_ZEROS = "exact zeros (absolute)"


def gradient_errors(pairs: dict, zero: float) -> dict[str, float]:
    """The relative error of each (ours, reference) pair, keyed by name.

    A reference whose every entry is below ``zero`` is a quantity that is exactly 0 in
    exact arithmetic, known only up to rounding (k_proj.bias when no key is appended:
    q.b_k shifts a whole row of scores, which softmax ignores; dquery when each query
    sees a single key). A relative error of two rounding noises means nothing, so
    these are checked absolutely: ``errors[EXACT_ZEROS]`` is the largest |ours| among them.
    """
    errors: dict[str, float] = {}
    for name, (ours, reference) in pairs.items():
        if np.abs(reference).max() < zero:
            errors[EXACT_ZEROS] = max(errors.get(EXACT_ZEROS, 0.0), float(np.abs(ours).max()))
        else:
            errors[name] = rel_error(ours, reference)
    return errors

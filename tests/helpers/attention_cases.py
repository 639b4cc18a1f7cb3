"""A grid of attention configurations covering every option of the attention pair.

Each case builds (q, k, v) and keyword options from a seeded generator, so the
finite-difference tests, the torch tests and the tiled attention share one grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    q: tuple
    k: tuple
    v: tuple
    mask: str | None = None  # None, "bool", "float", "bool-padding", "bool-empty-row", "float-empty-row"
    mask_shape: tuple | None = None  # defaults to the full (..., Hq, L, S)
    is_causal: bool = False
    dropout_p: float = 0.0
    scale: float | None = None
    extra: dict = field(default_factory=dict)

    def scores_shape(self) -> tuple:
        if len(self.q) == 2:
            return (self.q[0], self.k[0])
        batch = np.broadcast_shapes(self.q[:-3], self.k[:-3], self.v[:-3])
        return (*batch, self.q[-3], self.q[-2], self.k[-2])

    def build(self, seed: int = 0):
        """Return (q, k, v, options) where options are attention_forward's keyword arguments."""
        rng = np.random.default_rng(seed)
        q, k, v = (rng.standard_normal(s) for s in (self.q, self.k, self.v))
        options = {"is_causal": self.is_causal, "dropout_p": self.dropout_p, "scale": self.scale}
        if self.mask is not None:
            options["attn_mask"] = self._mask(rng)
        return q, k, v, options

    def _mask(self, rng: np.random.Generator) -> np.ndarray:
        full = self.scores_shape()
        shape = self.mask_shape or full
        if self.mask == "bool":
            mask = rng.random(shape) > 0.3
            mask[..., 0] = True  # every row keeps at least one key
            return mask
        if self.mask == "bool-padding":  # True for the first keys of each batch entry, as a (B, 1, 1, S) mask
            lengths = rng.integers(1, full[-1] + 1, size=shape[0])
            return (np.arange(full[-1]) < lengths[:, None]).reshape(shape)
        if self.mask == "bool-empty-row":
            mask = rng.random(shape) > 0.3
            mask[..., 0] = True
            mask[..., 1, :] = False  # query 1 sees no key
            return mask
        if self.mask == "float":
            mask = rng.standard_normal(shape)
            mask[rng.random(shape) < 0.2] = -np.inf
            mask[..., 0] = 0.5
            return mask
        if self.mask == "float-empty-row":
            mask = rng.standard_normal(shape)
            mask[..., 0, :] = -np.inf
            return mask
        raise ValueError(self.mask)


CASES = [
    Case("unbatched", (3, 4), (5, 4), (5, 2)),
    Case("heads", (2, 3, 4), (2, 5, 4), (2, 5, 6)),
    Case("batch-heads", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)),
    Case("L-equals-S", (1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3)),
    Case("gqa", (2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)),
    Case("mqa", (1, 3, 3, 4), (1, 1, 5, 4), (1, 1, 5, 2)),
    Case("broadcast-batch", (2, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3)),
    Case("two-batch-dims", (2, 1, 2, 3, 4), (1, 3, 2, 4, 4), (1, 3, 2, 4, 2)),
    Case("scale", (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), scale=0.7),
    Case("bool-mask", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="bool"),
    Case("bool-mask-LS", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="bool", mask_shape=(3, 5)),
    Case("bool-mask-per-head", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="bool", mask_shape=(2, 1, 5)),
    Case("padding-mask", (3, 2, 3, 4), (3, 2, 5, 4), (3, 2, 5, 3), mask="bool-padding", mask_shape=(3, 1, 1, 5)),
    Case("float-mask", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="float"),
    Case("float-mask-LS", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="float", mask_shape=(3, 5)),
    Case("unbatched-mask", (3, 4), (5, 4), (5, 2), mask="bool"),
    Case("causal", (1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3), is_causal=True),
    Case("causal-L<S", (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), is_causal=True),
    Case("causal-L>S", (1, 2, 5, 4), (1, 2, 3, 4), (1, 2, 3, 3), is_causal=True),
    Case("dropout", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), dropout_p=0.3),
    Case("fully-masked-row", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="bool-empty-row"),
    Case("fully-masked-float", (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), mask="float-empty-row", mask_shape=(3, 5)),
    Case("gqa-causal-dropout", (2, 4, 4, 3), (2, 2, 4, 3), (2, 2, 4, 5), is_causal=True, dropout_p=0.25),
    Case("gqa-mask-dropout-scale", (1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), mask="float", dropout_p=0.2, scale=0.3),
]


MASK_KINDS = [None, "bool", "float", "bool-padding", "bool-empty-row", "float-empty-row", "causal"]


def random_cases(count: int, seed: int) -> list[tuple[Case, int]]:
    """Seeded random shapes and options, each with a block size that may or may not divide L and S."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        num_kv_heads, group = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        num_queries, num_keys = (int(n) for n in rng.integers(2, 24, size=2))
        if rng.random() < 0.3:
            num_keys = num_queries
        embed, value_embed = (int(n) for n in rng.integers(1, 7, size=2))
        batch = [(), (2,), (2, 3)][i % 3]
        # Broadcast batch dimensions: k and v sometimes share a batch of 1 with q's full one.
        kv_batch = tuple(1 if rng.random() < 0.4 else n for n in batch)
        kind = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
        full = (*batch, num_kv_heads * group, num_queries, num_keys)
        mask_shape = {"bool-padding": (full[0], 1, 1, num_keys) if len(batch) == 1 else None,
                      "float": (num_queries, num_keys) if rng.random() < 0.5 else None}.get(kind)
        if kind == "bool-padding" and len(batch) != 1:  # a (B, 1, 1, T) padding mask needs one batch axis
            kind = "bool"
        case = Case(
            f"random-{i}",
            (*batch, num_kv_heads * group, num_queries, embed),
            (*kv_batch, num_kv_heads, num_keys, embed),
            (*kv_batch, num_kv_heads, num_keys, value_embed),
            mask=None if kind == "causal" else kind,
            mask_shape=mask_shape,
            is_causal=kind == "causal",
            dropout_p=float(rng.choice([0.0, 0.0, 0.3])),
            scale=None if rng.random() < 0.7 else float(rng.uniform(0.1, 2.0)),
        )
        cases.append((case, int(rng.choice([1, 2, 3, 4, 5, 7, 8, 16, 64]))))
    return cases


# Malformed attention calls: (part of the message, error type, make(zeros) -> (args, kwargs)).
BAD_CALLS = [
    ("q, k, v must have the same number", ValueError, lambda z: ((z(2, 3, 4), z(3, 4), z(3, 4)), {})),
    ("embedding size E", ValueError, lambda z: ((z(2, 3, 4), z(2, 5, 3), z(2, 5, 4)), {})),
    ("number of keys", ValueError, lambda z: ((z(2, 3, 4), z(2, 5, 4), z(2, 6, 4)), {})),
    ("multiple of", ValueError, lambda z: ((z(3, 3, 4), z(2, 5, 4), z(2, 5, 4)), {})),
    ("same number of heads", ValueError, lambda z: ((z(2, 3, 4), z(2, 5, 4), z(1, 5, 4)), {})),
    ("do not broadcast", ValueError, lambda z: ((z(2, 1, 3, 4), z(3, 1, 5, 4), z(3, 1, 5, 4)), {})),
    ("attn_mask of shape", ValueError, lambda z: ((z(2, 3, 4),) * 3, {"attn_mask": np.ones((4, 3), bool)})),
    ("attn_mask must have dtype", TypeError, lambda z: ((z(2, 3, 4),) * 3, {"attn_mask": np.ones((3, 3), int)})),
    ("cannot be combined", ValueError,
     lambda z: ((z(2, 3, 4),) * 3, {"attn_mask": np.ones((3, 3), bool), "is_causal": True})),
    ("dropout_p", ValueError, lambda z: ((z(2, 3, 4),) * 3, {"dropout_p": 1.0})),
    ("dropout_p", ValueError, lambda z: ((z(2, 3, 4),) * 3, {"dropout_p": -0.1})),
    ("dropout_p", ValueError, lambda z: ((z(2, 3, 4),) * 3, {"dropout_p": float("nan")})),
    ("is_causal", TypeError, lambda z: ((z(2, 3, 4),) * 3, {"is_causal": "yes"})),
    ("q must have dtype", TypeError, lambda z: ((z(3, 4) > 0, z(3, 4), z(3, 4)), {})),
    ("k must have dtype", TypeError, lambda z: ((z(3, 4), z(3, 4).astype(complex), z(3, 4)), {})),
    ("v must have dtype", TypeError, lambda z: ((z(3, 4), z(3, 4), z(3, 4).astype(object)), {})),
    ("must share one dtype", TypeError, lambda z: ((z(3, 4), z(3, 4).astype(np.float32), z(3, 4)), {})),
    ("rng", TypeError, lambda z: ((z(3, 4),) * 3, {"dropout_p": 0.1, "rng": "seed"})),
]

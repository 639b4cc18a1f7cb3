"""The benchmark cases: what runs, at which size, compared with what, against which target.

Each case holds callables that run one forward+backward (or forward) pass on
fixed random data; the first candidate is numpy_attention's. A comparison is
a ratio of two candidates' times, with the target it must stay below (the
issue's goals), or None when it is reported for information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import numpy_attention
from numpy_attention import kernels


@dataclass
class Comparison:
    numerator: str
    denominator: str
    target: float | None = None  # the ratio numerator / denominator must be at most this


@dataclass
class Case:
    name: str
    dtype: str
    shape: str
    flops: dict[str, float]  # useful floating-point operations of one call, per candidate
    candidates: dict[str, Callable[[], Any]]
    comparisons: list[Comparison]
    notes: list[str] = field(default_factory=list)


def attention_flops(
    batch_heads: int, num_queries: int, num_keys: int, head_dim: int, backward: bool, causal: bool
) -> float:
    """2 products forward (Q K^T, P V), 4 backward (dV, dP, dQ, dK), each 2 L S E; causal does half."""
    products = 6 if backward else 2
    return products * 2.0 * batch_heads * num_queries * num_keys * head_dim * (0.5 if causal else 1.0)


def _random(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def attention_inputs(size: dict, dtype: str) -> tuple[list[np.ndarray], str]:
    """Fixed random q, k, v and dout of shape (B, H, L, E), and the shape as text."""
    rng = np.random.default_rng(0)
    b, h, n, e = size["batch"], size["heads"], size["seq"], size["head_dim"]
    return [_random(rng, (b, h, n, e), dtype) for _ in range(4)], f"B={b} H={h} L=S={n} E={e}"


def numpy_attention_step(q, k, v, dout, is_causal=False, backward=True, impl="naive") -> Callable[[], Any]:
    forward_fn, backward_fn = {
        "naive": (kernels.attention_forward, kernels.attention_backward),
        "flash": (kernels.flash_attention_forward, kernels.flash_attention_backward),
    }[impl]

    def step():
        out, cache = forward_fn(q, k, v, is_causal=is_causal)
        return backward_fn(dout, cache) if backward else out

    return step


def torch_attention_step(torch, q, k, v, dout, is_causal=False, fused=True) -> Callable[[], Any]:
    """torch's scaled_dot_product_attention (fused), or the unfused composition with autograd."""
    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    dout_t = torch.tensor(dout)
    scale = 1.0 / math.sqrt(q.shape[-1])

    def step():
        for t in tensors:
            t.grad = None  # fresh gradients each call, as numpy_attention's backward returns
        qt, kt, vt = tensors
        if fused:
            out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=is_causal)
        else:
            scores = (qt * scale) @ kt.transpose(-1, -2)
            if is_causal:
                blocked = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
                scores = scores.masked_fill(blocked, -torch.inf)
            out = torch.softmax(scores, dim=-1) @ vt
        out.backward(dout_t)

    return step


def attention_case(torch, dtype: str, size: dict, targets: tuple[float | None, float | None]) -> Case:
    """Forward+backward of one attention call: numpy_attention vs torch SDPA and torch's unfused math."""
    (q, k, v, dout), shape = attention_inputs(size, dtype)
    b, h, n, e = q.shape
    flops = attention_flops(b * h, n, n, e, backward=True, causal=False)
    case = Case(
        f"attention fwd+bwd {dtype}", dtype, shape,
        {}, {"numpy_attention": numpy_attention_step(q, k, v, dout)}, [],
    )
    if torch is not None:
        case.candidates["torch sdpa"] = torch_attention_step(torch, q, k, v, dout)
        case.candidates["torch math"] = torch_attention_step(torch, q, k, v, dout, fused=False)
        case.comparisons = [
            Comparison("numpy_attention", "torch sdpa", targets[0]),
            Comparison("numpy_attention", "torch math", targets[1]),
        ]
    case.flops = {name: flops for name in case.candidates}
    return case


def causal_case(torch, size: dict) -> Case:
    """Causal forward+backward against torch, and numpy_attention's causal forward against its non-causal one."""
    (q, k, v, dout), shape = attention_inputs(size, "float32")
    b, h, n, e = q.shape
    case = Case(
        "causal float32", "float32", shape,
        {
            "numpy_attention causal fwd+bwd": attention_flops(b * h, n, n, e, backward=True, causal=True),
            "numpy_attention causal fwd": attention_flops(b * h, n, n, e, backward=False, causal=True),
            "numpy_attention fwd": attention_flops(b * h, n, n, e, backward=False, causal=False),
        },
        {
            "numpy_attention causal fwd+bwd": numpy_attention_step(q, k, v, dout, is_causal=True),
            "numpy_attention causal fwd": numpy_attention_step(q, k, v, dout, is_causal=True, backward=False),
            "numpy_attention fwd": numpy_attention_step(q, k, v, dout, backward=False),
        },
        # causal at least 1.6x faster than non-causal: time ratio at most 1 / 1.6
        [Comparison("numpy_attention causal fwd", "numpy_attention fwd", 1 / 1.6)],
    )
    if torch is not None:
        case.candidates["torch sdpa causal fwd+bwd"] = torch_attention_step(torch, q, k, v, dout, is_causal=True)
        case.flops["torch sdpa causal fwd+bwd"] = case.flops["numpy_attention causal fwd+bwd"]
        case.comparisons.insert(0, Comparison("numpy_attention causal fwd+bwd", "torch sdpa causal fwd+bwd"))
    return case


def multihead_case(torch, size: dict) -> Case:
    """MultiHeadAttention forward+backward (self-attention) against torch.nn.MultiheadAttention."""
    b, n, d, h = size["batch"], size["seq"], size["embed"], size["heads"]
    tokens, head_dim = b * n, d // h
    flops = 24.0 * tokens * d * d + attention_flops(b * h, n, n, head_dim, backward=True, causal=False)
    case = Case("MultiHeadAttention fwd+bwd float32", "float32", f"batch={b} seq={n} embed={d} heads={h}", {}, {}, [])
    rng = np.random.default_rng(0)
    x, dout = _random(rng, (b, n, d), "float32"), _random(rng, (b, n, d), "float32")
    ours = numpy_attention.MultiHeadAttention(d, h, dtype=np.float32, rng=np.random.default_rng(1))

    def numpy_step():
        ours(x, need_weights=False)
        return ours.backward(dout)

    case.candidates["numpy_attention"] = numpy_step
    if torch is not None:
        theirs = ours.to_torch()
        xt, dout_t = torch.tensor(x, requires_grad=True), torch.tensor(dout)

        def torch_step():
            xt.grad = None
            out, _ = theirs(xt, xt, xt, need_weights=False)
            out.backward(dout_t)

        case.candidates["torch MultiheadAttention"] = torch_step
        case.comparisons.append(Comparison("numpy_attention", "torch MultiheadAttention", 1.0))
    case.notes.append("both with need_weights=False, the setting of training (torch then runs its SDPA)")
    case.flops = {name: flops for name in case.candidates}
    return case


def long_sequence_case(torch, size: dict) -> Case:
    """One long sequence: the naive pair (L x S in memory) vs the tiled flash pair vs torch SDPA."""
    (q, k, v, dout), shape = attention_inputs(size, "float32")
    b, h, n, e = q.shape
    case = Case(
        "long sequence fwd+bwd float32", "float32", shape,
        {}, {"numpy_attention naive": numpy_attention_step(q, k, v, dout)}, [],
    )
    case.candidates["numpy_attention flash"] = numpy_attention_step(q, k, v, dout, impl="flash")
    case.comparisons.append(Comparison("numpy_attention flash", "numpy_attention naive"))
    if torch is not None:
        case.candidates["torch sdpa"] = torch_attention_step(torch, q, k, v, dout)
        case.comparisons[:0] = [Comparison(name, "torch sdpa") for name in case.candidates if name.startswith("numpy")]
    flops = attention_flops(b * h, n, n, e, backward=True, causal=False)
    case.flops = {name: flops for name in case.candidates}
    return case


FULL = {
    "attention": {"batch": 4, "heads": 8, "seq": 512, "head_dim": 64},
    "multihead": {"batch": 8, "seq": 256, "embed": 512, "heads": 8},
    "long": {"batch": 1, "heads": 8, "seq": 4096, "head_dim": 64},
}
QUICK = {
    "attention": {"batch": 1, "heads": 2, "seq": 32, "head_dim": 8},
    "multihead": {"batch": 2, "seq": 16, "embed": 16, "heads": 2},
    "long": {"batch": 1, "heads": 1, "seq": 64, "head_dim": 8},
}


def build_cases(torch, quick: bool) -> list[Case]:
    """Every case, at the issue's sizes or (``quick``) tiny ones that only check the harness runs."""
    sizes = QUICK if quick else FULL
    return [
        attention_case(torch, "float32", sizes["attention"], (1.5, 0.8)),
        attention_case(torch, "float64", sizes["attention"], (1.0, None)),
        causal_case(torch, sizes["attention"]),
        multihead_case(torch, sizes["multihead"]),
        long_sequence_case(torch, sizes["long"]),
    ]

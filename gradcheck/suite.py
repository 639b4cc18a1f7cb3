"""The fixed suite of ``python -m gradcheck``: every op and module of numpy_attention, over its options.

``ENTRIES`` is a plain list; each entry is a name and a builder that, given a
dtype, returns a :class:`Target`: a functional pair or a module, its inputs,
and the torch counterpart when torch has one. Adding a configuration is one
line::

    attention_entry("my-case", (2, 4, 3, 8), (2, 2, 5, 8), (2, 2, 5, 8), is_causal=True),
    mha_entry("my-case", keys=6, num_heads=4, num_kv_heads=2, dropout=0.1, training=True),

Inputs are seeded standard-normal data; dropout draws from a seeded
generator that the checks replay (see :mod:`gradcheck.randomness`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import numpy_attention as na
from numpy_attention import functional as F
from numpy_attention import kernels
from numpy_attention.attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL

from . import torch_ops
from .targets import (  # noqa: F401 - the suite's building blocks, also read as gradcheck.suite.NAME
    MASK_UNKNOWN,
    Entry,
    Target,
    attention_masks,
    attention_pair,
    attention_target,
    dropout_mask_of,
    make_mask,
    mha_target,
    module_dropout_mask,
    normal,
    scores_shape,
    sdpa_module_target,
)


def linear_module_target(dtype: np.dtype, x_shape: tuple, out_features: int, bias: bool = True) -> Target:
    (x,) = normal(dtype, x_shape, seed=3)
    module = na.Linear(x_shape[-1], out_features, bias, dtype=dtype, rng=np.random.default_rng(4))
    return Target((x,), module=module,
                  torch_forward=lambda params, x: torch_ops.linear(x, params["weight"], params.get("bias")))


def softmax_target(dtype: np.dtype, shape: tuple, axis: int = -1) -> Target:
    (x,) = normal(dtype, shape, seed=5)
    x = (3 * x).astype(dtype)  # peaked rows as well as flat ones
    return Target((x,), functools.partial(F.softmax_forward, axis=axis), F.softmax_backward,
                  torch_forward=functools.partial(torch_ops.softmax, axis=axis))


def embedding_target(dtype: np.dtype, indices_shape: tuple, padding_idx: int | None = None, pair: Any = F) -> Target:
    """The lookup of a (7, 4) table by ``pair`` (``functional`` or ``kernels``); with ``padding_idx``, that row too."""
    rng = np.random.default_rng(8)
    indices = rng.integers(0, 7, indices_shape)
    (weight,) = normal(dtype, (7, 4), seed=9)
    if padding_idx is None:
        return Target((indices, weight), pair.embedding_forward, pair.embedding_backward,
                      torch_forward=torch_ops.embedding)
    indices.flat[0] = padding_idx
    forward = functools.partial(pair.embedding_forward, padding_idx=padding_idx)
    return Target((indices, weight), forward, pair.embedding_backward,
                  torch_forward=functools.partial(torch_ops.embedding, padding_idx=padding_idx),
                  skip_finite_differences="the padding row gets no gradient by design (as in torch), "
                                          "not the derivative of the lookup")


def embedding_module_target(dtype: np.dtype) -> Target:
    indices = np.random.default_rng(10).integers(0, 7, (2, 5))
    module = na.Embedding(7, 4, dtype=dtype, rng=np.random.default_rng(11))
    return Target((indices,), module=module, torch_forward=lambda params, i: torch_ops.embedding(i, params["weight"]))


def cross_entropy_target(dtype: np.dtype, logits_shape: tuple, reduction: str = "mean",
                         ignore_index: int | None = None) -> Target:
    """Softmax cross-entropy on seeded logits (classes on axis 1, as in torch); some targets ignored if asked."""
    (logits,) = normal(dtype, logits_shape, seed=12)
    classes = logits_shape[1] if len(logits_shape) > 1 else logits_shape[0]
    target_shape = logits_shape[:1] + logits_shape[2:] if len(logits_shape) > 1 else ()
    target = np.random.default_rng(13).integers(0, classes, target_shape)
    options = {"reduction": reduction}
    if ignore_index is not None:
        target.flat[::3] = ignore_index
        options["ignore_index"] = ignore_index
    return Target((logits, target), functools.partial(F.cross_entropy_forward, **options), F.cross_entropy_backward,
                  torch_forward=functools.partial(torch_ops.cross_entropy, **options))


def linear_target(dtype: np.dtype, x_shape: tuple, out_features: int, bias: bool = True, pair: Any = F) -> Target:
    """The linear pair of ``pair`` (the textbook ``functional`` or the ``kernels``) on seeded inputs."""
    x, weight, b = normal(dtype, x_shape, (out_features, x_shape[-1]), (out_features,), seed=6)
    inputs = (x, weight, b) if bias else (x, weight)
    return Target(inputs, pair.linear_forward, pair.linear_backward, torch_forward=torch_ops.linear)


def attention_entry(name: str, q: tuple, k: tuple, v: tuple, **options: Any) -> Entry:
    return Entry(f"attention/{name}", lambda dt: attention_target(dt, q, k, v, **options))


def mha_entry(name: str, **options: Any) -> Entry:
    return Entry(f"MultiHeadAttention/{name}", lambda dt: mha_target(dt, **options))


B, H = 2, 2
QKV = ((B, H, 3, 4), (B, H, 5, 4), (B, H, 5, 3))  # batch, heads, L = 3 queries, S = 5 keys
SQUARE = ((1, H, 4, 3), (1, H, 4, 3), (1, H, 4, 3))  # L = S
ENTRIES: list[Entry] = [
    Entry("softmax/last-axis", lambda dt: softmax_target(dt, (3, 5))),
    Entry("softmax/axis-0", lambda dt: softmax_target(dt, (4, 3, 2), axis=0)),
    Entry("softmax/axis-1", lambda dt: softmax_target(dt, (2, 6, 3), axis=1)),
    Entry("linear/2d", lambda dt: linear_target(dt, (3, 4), 5)),
    Entry("linear/3d", lambda dt: linear_target(dt, (2, 3, 4), 5)),
    Entry("linear/no-bias", lambda dt: linear_target(dt, (2, 3, 4), 5, bias=False)),
    Entry("linear/no-input-features", lambda dt: linear_target(dt, (2, 3, 0), 5)),
    Entry("linear/kernel-3d", lambda dt: linear_target(dt, (2, 3, 4), 5, pair=kernels)),
    Entry("linear/kernel-no-input-features", lambda dt: linear_target(dt, (2, 3, 0), 5, pair=kernels)),
    attention_entry("unbatched", (3, 4), (5, 4), (5, 2)),
    attention_entry("heads", (H, 3, 4), (H, 5, 4), (H, 5, 6)),
    attention_entry("batch-heads", *QKV),
    attention_entry("L-equals-S", *SQUARE),
    attention_entry("gqa", (B, 4, 3, 4), (B, 2, 5, 4), (B, 2, 5, 3)),
    attention_entry("mqa", (1, 3, 3, 4), (1, 1, 5, 4), (1, 1, 5, 2)),
    attention_entry("broadcast-batch", (B, H, 3, 4), (1, H, 5, 4), (1, H, 5, 3)),
    attention_entry("broadcast-k-batch", (1, H, 3, 4), (B, H, 5, 4), (1, H, 5, 3)),
    attention_entry("broadcast-v-batch", (1, H, 3, 4), (1, H, 5, 4), (B, H, 5, 3)),
    attention_entry("scale", *QKV, scale=0.7),
    attention_entry("bool-mask", *QKV, mask="bool"),
    attention_entry("bool-mask-LS", *QKV, mask="bool", mask_shape=(3, 5)),
    attention_entry("bool-mask-per-head", *QKV, mask="bool", mask_shape=(H, 1, 5)),
    attention_entry("float-mask", *QKV, mask="float"),
    attention_entry("fully-masked-row", *QKV, mask="empty-row"),
    attention_entry("causal", *SQUARE, is_causal=True),
    attention_entry("causal-L<S", (1, H, 3, 4), (1, H, 5, 4), (1, H, 5, 3), is_causal=True),
    attention_entry("causal-L>S", (1, H, 5, 4), (1, H, 3, 4), (1, H, 3, 3), is_causal=True),
    attention_entry("dropout", *QKV, dropout_p=0.3),
    attention_entry("gqa-causal-dropout", (B, 4, 4, 3), (B, 2, 4, 3), (B, 2, 4, 5), is_causal=True, dropout_p=0.25),
    attention_entry("gqa-mask-dropout-scale", (1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), mask="float",
                    dropout_p=0.2, scale=0.3),
    Entry("embedding/2d-indices", lambda dt: embedding_target(dt, (3, 5))),
    Entry("embedding/padding-idx", lambda dt: embedding_target(dt, (2, 6), padding_idx=2)),
    Entry("embedding/kernel-2d-indices", lambda dt: embedding_target(dt, (3, 5), pair=kernels)),
    Entry("embedding/kernel-padding-idx", lambda dt: embedding_target(dt, (2, 6), padding_idx=2, pair=kernels)),
    Entry("cross_entropy/mean", lambda dt: cross_entropy_target(dt, (4, 5))),
    Entry("cross_entropy/sum-unbatched", lambda dt: cross_entropy_target(dt, (5,), reduction="sum")),
    Entry("cross_entropy/none-spatial", lambda dt: cross_entropy_target(dt, (2, 5, 3), reduction="none")),
    Entry("cross_entropy/ignore-index", lambda dt: cross_entropy_target(dt, (6, 4), ignore_index=-100)),
    Entry("Linear/2d", lambda dt: linear_module_target(dt, (3, 4), 5)),
    Entry("Linear/3d", lambda dt: linear_module_target(dt, (2, 3, 4), 5)),
    Entry("Linear/no-bias", lambda dt: linear_module_target(dt, (2, 3, 4), 5, bias=False)),
    Entry("ScaledDotProductAttention/plain", lambda dt: sdpa_module_target(dt)),
    Entry("ScaledDotProductAttention/mask", lambda dt: sdpa_module_target(dt, mask="bool")),
    Entry("ScaledDotProductAttention/causal-scale", lambda dt: sdpa_module_target(dt, is_causal=True, scale=0.5)),
    Entry("ScaledDotProductAttention/dropout-train", lambda dt: sdpa_module_target(dt, dropout=0.3)),
    Entry("ScaledDotProductAttention/dropout-eval", lambda dt: sdpa_module_target(dt, dropout=0.3, training=False)),
    Entry("Embedding/lookup", embedding_module_target),
    mha_entry("self-attention"),
    mha_entry("cross-kdim-vdim", keys=4, kdim=5, vdim=6),
    mha_entry("no-bias", keys=4, bias=False),
    mha_entry("bias-kv-zero-attn", keys=4, add_bias_kv=True, add_zero_attn=True),
    mha_entry("bool-masks", keys=4, masks="bool"),
    mha_entry("float-masks-bias-kv", keys=4, masks="float", add_bias_kv=True),
    mha_entry("causal", is_causal=True),
    mha_entry("causal-bool-padding", is_causal=True, masks="bool"),
    mha_entry("seq-first", keys=4, batch_first=False),
    mha_entry("unbatched", batch=None, keys=4, masks="bool"),
    mha_entry("dropout-train", dropout=0.3, training=True),
    mha_entry("dropout-eval", dropout=0.3),
    mha_entry("no-weights", need_weights=False),
    mha_entry("gqa", num_heads=4, num_kv_heads=2),
    mha_entry("mqa-causal-dropout", num_heads=4, num_kv_heads=1, is_causal=True, dropout=0.2, training=True),
    mha_entry("wide-64", batch=2, queries=16, embed_dim=64, num_heads=8, fast=True),
]


def tiled_entries(impl: str) -> list[Entry]:
    """The configurations that tell another implementation apart from the default (tiling, GQA, masks, dropout)."""
    return [
        attention_entry(f"{impl}-batch-heads", *QKV, impl=impl),
        attention_entry(f"{impl}-gqa-causal-L>S", (B, 4, 5, 4), (B, 2, 3, 4), (B, 2, 3, 3), is_causal=True,
                        impl=impl),
        attention_entry(f"{impl}-float-mask-scale", *QKV, mask="float", scale=0.6, impl=impl),
        attention_entry(f"{impl}-fully-masked-row", *QKV, mask="empty-row", impl=impl),
        attention_entry(f"{impl}-unbatched", (3, 4), (5, 4), (5, 2), impl=impl),
        attention_entry(f"{impl}-gqa-no-batch", (4, 3, 4), (2, 5, 4), (2, 5, 3), impl=impl),
        attention_entry(f"{impl}-no-heads", (2, 0, 3, 4), (2, 0, 5, 4), (2, 0, 5, 3), impl=impl),
        attention_entry(f"{impl}-broadcast-q-batch", (B, H, 3, 4), (1, H, 5, 4), (1, H, 5, 3), impl=impl),
        attention_entry(f"{impl}-broadcast-k-batch", (1, H, 3, 4), (B, H, 5, 4), (1, H, 5, 3), impl=impl),
        attention_entry(f"{impl}-broadcast-v-batch", (1, H, 3, 4), (1, H, 5, 4), (B, H, 5, 3), impl=impl),
        attention_entry(f"{impl}-dropout", *QKV, dropout_p=0.3, impl=impl),
        Entry(f"ScaledDotProductAttention/{impl}-mask-dropout",
              lambda dt: sdpa_module_target(dt, mask="bool", dropout=0.2, impl=impl)),
        mha_entry(f"{impl}-no-weights-gqa", num_heads=4, num_kv_heads=2, need_weights=False, impl=impl),
        mha_entry(f"{impl}-no-weights-masks", keys=4, masks="bool", need_weights=False, impl=impl),
    ]


# Every implementation registered besides the default one: the tiled kernel and the textbook pairs.
ENTRIES += [entry for impl in sorted(ATTENTION_IMPLS) if impl != DEFAULT_IMPL for entry in tiled_entries(impl)]


# --- RoPE, RMSNorm, score modifications and attention sinks --------------------------------------

def rope_target(dtype: np.dtype, shape: tuple, *, interleaved: bool, positions: str = "default") -> Target:
    """RoPE on seeded (..., L, D) data: default positions 0..L-1, or a KV cache's far-off ones."""
    (x,) = normal(dtype, shape, seed=16)
    pos = None if positions == "default" else 70_000 + np.random.default_rng(17).permutation(shape[-2])
    options = dict(positions=pos, base=500.0 if pos is None else 10000.0, interleaved=interleaved)
    return Target((x,), functools.partial(F.rope_forward, **options), F.rope_backward,
                  torch_forward=functools.partial(torch_ops.rope, **options))


def rms_norm_target(dtype: np.dtype, x_shape: tuple, weight: bool = True, eps: float = 1e-6) -> Target:
    x, w = normal(dtype, x_shape, x_shape[-1:], seed=18)
    inputs = (x, (1 + w).astype(dtype)) if weight else (x,)
    return Target(inputs, functools.partial(F.rms_norm_forward, eps=eps), F.rms_norm_backward,
                  torch_forward=lambda x, w=None: torch_ops.rms_norm(x, w, eps))


def rms_norm_module_target(dtype: np.dtype, normalized_shape: Any, x_shape: tuple, affine: bool = True) -> Target:
    module = na.RMSNorm(normalized_shape, eps=1e-5, elementwise_affine=affine, dtype=dtype)
    for value in module.params.values():  # a gain other than the initial ones
        value[...] = 1 + normal(dtype, value.shape, seed=19)[0]
    (x,) = normal(dtype, x_shape, seed=20)
    normalized = module.normalized_shape
    return Target((x,), module=module, torch_forward=lambda params, x: torch_ops.rms_norm(
        x, params.get("weight"), 1e-5, normalized))


def score_mod_target(dtype: np.dtype, *, softcap: float | None = None, alibi: bool = False) -> Target:
    """Soft-cap and/or ALiBi on (2, 3, 4, 5) scores of every size (|s| up to ~4c), queries offset by 1."""
    (scores,) = normal(dtype, (2, 3, 4, 5), seed=21)
    scores = (scores * np.geomspace(0.3, 10.0, 5)).astype(dtype)
    options = dict(query_pos=np.arange(4) + 1, key_pos=np.arange(5), softcap=softcap,
                   alibi_slopes=2.0 ** -np.arange(1.0, 4.0) if alibi else None)
    return Target((scores,), functools.partial(F.score_mod_forward, **options),
                  F.score_mod_backward, torch_forward=functools.partial(torch_ops.score_mod, **options))


def sink_softmax_target(dtype: np.dtype) -> Target:
    """The sink softmax under a causal sliding window with query_offset -1 (query 0 sees no key: P_sink = 1)."""
    scores, sinks = normal(dtype, (2, 3, 4, 5), (3,), seed=22)
    seen = F.score_mods.visible(np.arange(4) - 1, np.arange(5), is_causal=True, window=(1, None))

    def masked_sink_softmax_forward(S: np.ndarray, sinks: np.ndarray) -> tuple:
        return F.softmax_with_sink_forward(np.where(seen, S, -np.inf), sinks)

    return Target((scores, sinks), masked_sink_softmax_forward, F.softmax_with_sink_backward,
                  torch_forward=functools.partial(torch_ops.softmax_with_sink, visible=seen))


ENTRIES += [
    Entry("rope/half-split", lambda dt: rope_target(dt, (2, 3, 5, 8), interleaved=False)),
    Entry("rope/interleaved", lambda dt: rope_target(dt, (2, 3, 5, 8), interleaved=True)),
    Entry("rope/half-split-positions-7e4", lambda dt: rope_target(dt, (4, 6), interleaved=False, positions="far")),
    Entry("rope/interleaved-positions-7e4", lambda dt: rope_target(dt, (4, 6), interleaved=True, positions="far")),
    Entry("rms_norm/weight", lambda dt: rms_norm_target(dt, (2, 3, 6))),
    Entry("rms_norm/no-weight", lambda dt: rms_norm_target(dt, (3, 5), weight=False)),
    Entry("rms_norm/large-eps", lambda dt: rms_norm_target(dt, (4, 3), eps=0.5)),
    Entry("RMSNorm/last-axis", lambda dt: rms_norm_module_target(dt, 6, (2, 3, 6))),
    Entry("RMSNorm/two-axes", lambda dt: rms_norm_module_target(dt, (2, 3), (4, 2, 3))),
    Entry("RMSNorm/no-affine", lambda dt: rms_norm_module_target(dt, 4, (3, 4), affine=False)),
    Entry("score_mod/softcap", lambda dt: score_mod_target(dt, softcap=2.0)),
    Entry("score_mod/alibi", lambda dt: score_mod_target(dt, alibi=True)),
    Entry("score_mod/softcap-alibi", lambda dt: score_mod_target(dt, softcap=2.0, alibi=True)),
    Entry("sinks/window-empty-row", sink_softmax_target),
]


# ----- The transformer block's pieces and the GPT (issue 15) -----------------------------------------------


def _torch_functional() -> Any:
    from .reference import require_torch

    return require_torch().nn.functional


def layer_norm_target(dtype: np.dtype, shape: tuple, weight: bool = True, bias: bool = True, pair: Any = F) -> Target:
    """The layer-norm pair of ``pair`` (the textbook ``functional`` or the ``kernels``) on seeded rows."""
    x, w, b = normal(dtype, shape, shape[-1:], shape[-1:], seed=14)
    x = (3 * x + 1).astype(dtype)  # rows with a mean and a spread to remove
    if weight and bias:
        return Target((x, w, b), pair.layer_norm_forward, pair.layer_norm_backward,
                      torch_forward=lambda x, w, b: _torch_functional().layer_norm(x, x.shape[-1:], w, b, 1e-5))
    if weight:
        return Target((x, w), lambda x, w: pair.layer_norm_forward(x, w), pair.layer_norm_backward,
                      torch_forward=lambda x, w: _torch_functional().layer_norm(x, x.shape[-1:], w, None, 1e-5))
    return Target((x,), pair.layer_norm_forward, lambda d, c: pair.layer_norm_backward(d, c)[0],
                  torch_forward=lambda x: _torch_functional().layer_norm(x, x.shape[-1:], None, None, 1e-5))


def gelu_target(dtype: np.dtype, approximate: str, pair: Any = F) -> Target:
    (x,) = normal(dtype, (3, 7), seed=15)
    x = (3 * x).astype(dtype)
    return Target((x,), functools.partial(pair.gelu_forward, approximate=approximate), pair.gelu_backward,
                  torch_forward=lambda x: _torch_functional().gelu(x, approximate=approximate))


def layer_norm_module_target(dtype: np.dtype, bias: bool = True) -> Target:
    module = na.LayerNorm(5, bias=bias, dtype=dtype)
    for i, value in enumerate(module.params.values()):
        value[...] = normal(dtype, value.shape, seed=16 + i)[0]
    (x,) = normal(dtype, (2, 3, 5), seed=18)
    return Target((x,), module=module, torch_forward=lambda params, x: _torch_functional().layer_norm(
        x, (5,), params["weight"], params.get("bias"), 1e-5))


def gpt_target(dtype: np.dtype, bias: bool = True) -> Target:
    """A tiny GPT (two layers), every parameter; the dout-taking backward, d sum(logits * dout)."""
    from numpy_attention.models import GPT

    module = GPT(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=4, bias=bias, dtype=dtype,
                 rng=np.random.default_rng(19))
    for i, value in enumerate(module.params.values()):  # O(1) weights: gradients well above the noise
        value += (0.5 * normal(dtype, value.shape, seed=20 + i)[0]).astype(dtype)
    idx = np.random.default_rng(21).integers(0, 5, (2, 4))
    return Target((idx,), module=module, fast=True)


ENTRIES += [
    Entry("layer_norm/affine", lambda dt: layer_norm_target(dt, (4, 6))),
    Entry("layer_norm/no-bias-3d", lambda dt: layer_norm_target(dt, (2, 3, 5), bias=False)),
    Entry("layer_norm/no-affine", lambda dt: layer_norm_target(dt, (3, 5), weight=False, bias=False)),
    Entry("gelu/exact", lambda dt: gelu_target(dt, "none")),
    Entry("gelu/tanh", lambda dt: gelu_target(dt, "tanh")),
    Entry("LayerNorm/affine", lambda dt: layer_norm_module_target(dt)),
    Entry("LayerNorm/no-bias", lambda dt: layer_norm_module_target(dt, bias=False)),
    Entry("GELU/exact", lambda dt: Target((normal(dt, (2, 5), seed=22)[0],), module=na.GELU())),
    Entry("GPT/tiny", gpt_target),
    Entry("GPT/tiny-no-bias", lambda dt: gpt_target(dt, bias=False)),
]


def swiglu_target(dtype: np.dtype) -> Target:
    gate, up = normal(dtype, (3, 6), (3, 6), seed=23)
    gate = (3 * gate).astype(dtype)
    return Target((gate, up), F.swiglu_forward, F.swiglu_backward,
                  torch_forward=lambda g, u: _torch_functional().silu(g) * u)


def llama_target(dtype: np.dtype) -> Target:
    """The Llama configuration of the tiny GPT: RMSNorm, RoPE, SwiGLU, two query heads per k/v head, no biases."""
    from numpy_attention.models import GPT

    module = GPT(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=8, bias=False, n_kv_head=1, norm="rms",
                 position="rope", mlp="swiglu", dtype=dtype, rng=np.random.default_rng(24))
    for i, value in enumerate(module.params.values()):
        value += (0.5 * normal(dtype, value.shape, seed=25 + i)[0]).astype(dtype)
    return Target((np.random.default_rng(26).integers(0, 5, (2, 4)),), module=module, fast=True)


ENTRIES += [
    Entry("swiglu/gate-up", swiglu_target),
    Entry("GPT/tiny-llama", llama_target),
]


# --- the tiers of issue 13 (gradcheck/tiers/): tiles, stress, dropout, weights, option pairs, optimizers ---
from .tiers import TIER_ENTRIES  # noqa: E402 - the tiers' entries after the per-op ones

ENTRIES += TIER_ENTRIES

# --- today's attention options and CausalSelfAttention (gradcheck/suite_modern.py) ---
from .suite_modern import MODERN_ENTRIES  # noqa: E402 - the entries of today's attention, in a file of their own

ENTRIES += MODERN_ENTRIES

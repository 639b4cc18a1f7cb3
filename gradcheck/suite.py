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
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import numpy_attention as na
from numpy_attention import functional as F
from numpy_attention.attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL

from . import torch_ops
from .check import check
from .module_check import check_module
from .reference import compare_module_with_torch, compare_with_torch
from .report import Report


@dataclass
class Target:
    """What one entry checks: ``forward``/``backward`` or ``module``, with inputs and the torch reference.

    ``torch_forward`` follows :func:`compare_with_torch` for a pair and
    :func:`compare_module_with_torch` (``(params, *inputs)``) for a module.
    """

    inputs: tuple
    forward: Callable | None = None
    backward: Callable | None = None
    module: Any = None
    forward_kwargs: dict = field(default_factory=dict)
    torch_forward: Callable | None = None
    fast: bool = False  # always fast mode: too many elements for an exhaustive check in the time budget
    skip_finite_differences: str = ""  # the reason, when the gradient is by design not the derivative

    def check(self, fast: bool) -> Report:
        fast = fast or self.fast
        if self.module is not None:
            return check_module(self.module, *self.inputs, fast=fast, **self.forward_kwargs)
        return check(self.forward, self.backward, self.inputs, fast=fast)

    def compare_with_torch(self) -> Report:
        if self.module is not None:
            return compare_module_with_torch(self.module, self.torch_forward, *self.inputs, **self.forward_kwargs)
        return compare_with_torch(self.forward, self.backward, self.torch_forward, self.inputs)


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[[np.dtype], Target]


def normal(dtype: np.dtype, *shapes: tuple, seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal arrays of the given shapes and dtype."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def make_mask(kind: str | None, shape: tuple, seed: int = 1) -> np.ndarray | None:
    """A boolean mask (True = may attend) or a float mask with some -inf; every row keeps key 0."""
    if kind is None:
        return None
    rng = np.random.default_rng(seed)
    if kind == "bool":
        mask = rng.random(shape) > 0.3
        mask[..., 0] = True
        return mask
    if kind == "float":
        mask = rng.standard_normal(shape)
        mask[rng.random(shape) < 0.2] = -np.inf
        mask[..., 0] = 0.5
        return mask
    if kind == "empty-row":  # query row 1 may attend to nothing: output 0, gradient 0
        mask = rng.random(shape) > 0.3
        mask[..., 0] = True
        mask[..., 1, :] = False
        return mask
    raise ValueError(f"unknown mask kind {kind!r}")


def scores_shape(q: np.ndarray, k: np.ndarray) -> tuple:
    """(..., Hq, L, T): the shape of the scores, which the masks broadcast to."""
    return (*np.broadcast_shapes(q.shape[:-3], k.shape[:-3]), *q.shape[-3:-1], k.shape[-2]) if q.ndim > 2 else (
        q.shape[0], k.shape[0])


def attention_pair(impl: str) -> tuple[Callable, Callable]:
    """The forward/backward registered as ``impl``; the tiled one with small tiles, so that L and S span several."""
    forward, backward = ATTENTION_IMPLS[impl]
    if "block_size" in inspect.signature(forward).parameters:
        forward = functools.partial(forward, block_size=2)
    return forward, backward


def attention_target(
    dtype: np.dtype, q_shape: tuple, k_shape: tuple, v_shape: tuple, *, mask: str | None = None,
    mask_shape: tuple | None = None, is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
    impl: str = DEFAULT_IMPL,
) -> Target:
    """The attention pair ``impl`` on seeded q, k, v with the given options (dropout from a replayed generator)."""
    q, k, v = normal(dtype, q_shape, k_shape, v_shape)
    attn_mask = make_mask(mask, mask_shape or scores_shape(q, k))
    options = dict(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    pair_forward, backward = attention_pair(impl)
    forward = functools.partial(pair_forward, **options, rng=np.random.default_rng(7))
    # torch cannot draw our dropout mask: hand it the one our forward draws from the same seed.
    dropout_mask = dropout_mask_of(pair_forward(q, k, v, **options, rng=np.random.default_rng(7))[1], dropout_p)
    torch_forward = None if dropout_mask is MASK_UNKNOWN else functools.partial(
        torch_ops.attention, attn_mask=attn_mask, is_causal=is_causal, scale=scale, dropout_mask=dropout_mask,
        dropout_p=dropout_p)
    return Target((q, k, v), forward, backward, torch_forward=torch_forward)


MASK_UNKNOWN = object()


def dropout_mask_of(cache: Any, dropout_p: float) -> Any:
    """The keep-mask a forward drew (None without dropout); MASK_UNKNOWN if its cache does not hold it."""
    if not dropout_p:
        return None
    return getattr(getattr(cache, "attention", cache), "dropout_mask", MASK_UNKNOWN)


def module_dropout_mask(module: Any, inputs: tuple, kwargs: dict) -> Any:
    """The mask the module's next forward will draw: one forward, then its generator and cache put back."""
    dropout_p = module.dropout if module.training else 0.0
    state, cache = module.rng.bit_generator.state, module._cache
    module(*inputs, **kwargs)
    mask = dropout_mask_of(module.saved_cache(), dropout_p)
    module.rng.bit_generator.state, module._cache = state, cache
    return mask


def sdpa_module_target(dtype: np.dtype, *, dropout: float = 0.0, scale: float | None = None, training: bool = True,
                       mask: str | None = None, is_causal: bool = False, impl: str = DEFAULT_IMPL) -> Target:
    """``ScaledDotProductAttention`` on (2, 2, 4, 3) queries and (2, 2, 5, 3) keys/values."""
    q, k, v = normal(dtype, (2, 2, 4, 3), (2, 2, 5, 3), (2, 2, 5, 2), seed=2)
    module = na.ScaledDotProductAttention(dropout, scale, impl=impl, rng=np.random.default_rng(11)).train(training)
    kwargs = dict(attn_mask=make_mask(mask, (4, 5)), is_causal=is_causal)
    dropout_mask = module_dropout_mask(module, (q, k, v), kwargs)
    reference = functools.partial(torch_ops.attention, **kwargs, scale=scale, dropout_mask=dropout_mask,
                                  dropout_p=dropout)
    return Target((q, k, v), module=module, forward_kwargs=kwargs,
                  torch_forward=None if dropout_mask is MASK_UNKNOWN else lambda params, q, k, v: reference(q, k, v))


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


def embedding_target(dtype: np.dtype, indices_shape: tuple, padding_idx: int | None = None) -> Target:
    """The lookup of a (7, 4) table; with ``padding_idx``, the indices use that row too."""
    rng = np.random.default_rng(8)
    indices = rng.integers(0, 7, indices_shape)
    (weight,) = normal(dtype, (7, 4), seed=9)
    if padding_idx is None:
        return Target((indices, weight), F.embedding_forward, F.embedding_backward, torch_forward=torch_ops.embedding)
    indices.flat[0] = padding_idx
    forward = functools.partial(F.embedding_forward, padding_idx=padding_idx)
    return Target((indices, weight), forward, F.embedding_backward,
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


def linear_target(dtype: np.dtype, x_shape: tuple, out_features: int, bias: bool = True) -> Target:
    x, weight, b = normal(dtype, x_shape, (out_features, x_shape[-1]), (out_features,), seed=6)
    inputs = (x, weight, b) if bias else (x, weight)
    return Target(inputs, F.linear_forward, F.linear_backward, torch_forward=torch_ops.linear)


def mha_target(
    dtype: np.dtype, *, batch: int | None = 2, queries: int = 3, keys: int | None = None, training: bool = False,
    masks: str | None = None, is_causal: bool = False, need_weights: bool = True, fast: bool = False,
    embed_dim: int = 8, num_heads: int = 2, **options: Any,
) -> Target:
    """``MultiHeadAttention`` with non-zero biases; self-attention when ``keys`` is None.

    ``masks``: None, "bool" (key_padding_mask and a (L, S) attn_mask, True = not allowed)
    or "float" (key_padding_mask and a (N * H, L, S) attn_mask, added).
    """
    rng = np.random.default_rng(13)
    module = na.MultiHeadAttention(embed_dim, num_heads, **options, dtype=dtype, rng=np.random.default_rng(12))
    module.train(training)
    for name, value in module.params.items():  # non-zero biases: a wrong bias gradient cannot hide behind zeros
        if "bias" in name:
            value[...] = rng.standard_normal(value.shape)

    def layout(seq: int, features: int) -> tuple:
        if batch is None:
            return (seq, features)
        return (batch, seq, features) if options.get("batch_first", True) else (seq, batch, features)

    if keys is None:
        shapes = [layout(queries, embed_dim)]
    else:
        shapes = [layout(queries, embed_dim), layout(keys, module.kdim), layout(keys, module.vdim)]
    inputs = tuple(normal(dtype, *shapes, seed=14))
    kwargs = {"is_causal": is_causal, "need_weights": need_weights}
    if masks is not None:
        kwargs.update(attention_masks(masks, batch, num_heads, queries, keys or queries, module.dtype))
    dropout_mask = module_dropout_mask(module, inputs, kwargs)  # torch is handed the mask our forward draws
    torch_forward = None if dropout_mask is MASK_UNKNOWN else functools.partial(
        torch_ops.multi_head_attention, num_heads=num_heads, batch_first=module.batch_first,
        add_zero_attn=module.add_zero_attn, dropout_mask=dropout_mask, dropout_p=module.dropout, **kwargs,
    )
    return Target(inputs, module=module, forward_kwargs=kwargs, torch_forward=torch_forward, fast=fast)


def attention_masks(kind: str, batch: int | None, heads: int, queries: int, keys: int, dtype: np.dtype) -> dict:
    """torch MultiheadAttention masks (True / -inf = not allowed); key 0 always stays allowed."""
    rng = np.random.default_rng(15)
    padding_shape = (keys,) if batch is None else (batch, keys)
    mask_shape = (queries, keys) if kind == "bool" else ((batch or 1) * heads, queries, keys)
    blocked = rng.random(padding_shape) < 0.3, rng.random(mask_shape) < 0.3
    for mask in blocked:
        mask[..., 0] = False
    if kind == "bool":
        return {"key_padding_mask": blocked[0], "attn_mask": blocked[1]}
    additive = [np.where(mask, -np.inf, rng.standard_normal(mask.shape)).astype(dtype) for mask in blocked]
    if batch is None:
        additive[1] = additive[1].reshape(heads, queries, keys)
    return {"key_padding_mask": additive[0], "attn_mask": additive[1]}


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
    attention_entry("unbatched", (3, 4), (5, 4), (5, 2)),
    attention_entry("heads", (H, 3, 4), (H, 5, 4), (H, 5, 6)),
    attention_entry("batch-heads", *QKV),
    attention_entry("L-equals-S", *SQUARE),
    attention_entry("gqa", (B, 4, 3, 4), (B, 2, 5, 4), (B, 2, 5, 3)),
    attention_entry("mqa", (1, 3, 3, 4), (1, 1, 5, 4), (1, 1, 5, 2)),
    attention_entry("broadcast-batch", (B, H, 3, 4), (1, H, 5, 4), (1, H, 5, 3)),
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

from .suite_modern import MODERN_ENTRIES  # noqa: E402 - the entries of today's attention, in a file of their own

ENTRIES += MODERN_ENTRIES

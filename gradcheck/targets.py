"""The targets of ``python -m gradcheck``: what one entry checks, and the builders the suite and its tiers share.

A :class:`Target` is a functional pair or a module, its inputs, and the torch
counterpart when torch has one; an :class:`Entry` names a builder of one. The
builders here (attention pairs and modules, with masks and replayed dropout) are
used by :mod:`gradcheck.suite` and by the tiers in :mod:`gradcheck.tiers`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import numpy_attention as na
from numpy_attention.attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL
from numpy_attention.functional.dropout import position_keep_mask

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


def attention_pair(impl: str, block_size: Any = 2) -> tuple[Callable, Callable]:
    """The forward/backward registered as ``impl``; the tiled one with small tiles, so that L and S span several."""
    forward, backward = ATTENTION_IMPLS[impl]
    if "block_size" in inspect.signature(forward).parameters:
        forward = functools.partial(forward, block_size=block_size)
    return forward, backward


def attention_target(
    dtype: np.dtype, q_shape: tuple, k_shape: tuple, v_shape: tuple, *, mask: str | None = None,
    mask_shape: tuple | None = None, is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
    impl: str = DEFAULT_IMPL, block_size: Any = 2,
) -> Target:
    """The attention pair ``impl`` on seeded q, k, v with the given options (dropout from a replayed generator)."""
    q, k, v = normal(dtype, q_shape, k_shape, v_shape)
    attn_mask = make_mask(mask, mask_shape or scores_shape(q, k))
    options = dict(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    pair_forward, backward = attention_pair(impl, block_size)
    forward = functools.partial(pair_forward, **options, rng=np.random.default_rng(7))
    # torch cannot draw our dropout mask: hand it the one our forward draws from the same seed.
    dropout_mask = dropout_mask_of(pair_forward(q, k, v, **options, rng=np.random.default_rng(7))[1], dropout_p)
    torch_forward = None if dropout_mask is MASK_UNKNOWN else functools.partial(
        torch_ops.attention, attn_mask=attn_mask, is_causal=is_causal, scale=scale, dropout_mask=dropout_mask,
        dropout_p=dropout_p)
    return Target((q, k, v), forward, backward, torch_forward=torch_forward)


MASK_UNKNOWN = object()


def dropout_mask_of(cache: Any, dropout_p: float) -> Any:
    """The keep-mask a forward drew (None without dropout); MASK_UNKNOWN if its cache does not hold it.

    A tiled pair's cache holds the seed its mask is regenerated from: the whole mask is computed from it.
    """
    if not dropout_p:
        return None
    cache = getattr(cache, "attention", cache)
    if getattr(cache, "dropout_seed", None) is not None:
        shape = (*cache.out.shape[:-1], cache.k.shape[-2])
        return position_keep_mask(cache.dropout_seed, shape, slice(0, shape[-2]), slice(0, shape[-1]), dropout_p)
    return getattr(cache, "dropout_mask", MASK_UNKNOWN)


def module_dropout_mask(module: Any, inputs: tuple, kwargs: dict) -> Any:
    """The mask the module's next forward will draw: one forward, then its generator and cache put back."""
    dropout_p = module.dropout if module.training else 0.0
    state, cache = module.rng.bit_generator.state, module._cache
    module(*inputs, **kwargs)
    mask = dropout_mask_of(module.saved_cache(), dropout_p)
    module.rng.bit_generator.state, module._cache = state, cache
    return mask


def sdpa_module_target(dtype: np.dtype, *, dropout: float = 0.0, scale: float | None = None, training: bool = True,
                       mask: str | None = None, is_causal: bool = False, impl: str = DEFAULT_IMPL,
                       shapes: tuple = ((2, 2, 4, 3), (2, 2, 5, 3), (2, 2, 5, 2))) -> Target:
    """``ScaledDotProductAttention`` on (2, 2, 4, 3) queries and (2, 2, 5, 3) keys/values (or ``shapes``)."""
    q, k, v = normal(dtype, *shapes, seed=2)
    module = na.ScaledDotProductAttention(dropout, scale, impl=impl, rng=np.random.default_rng(11)).train(training)
    kwargs = dict(attn_mask=make_mask(mask, (q.shape[-2], k.shape[-2])), is_causal=is_causal)
    dropout_mask = module_dropout_mask(module, (q, k, v), kwargs)
    reference = functools.partial(torch_ops.attention, **kwargs, scale=scale, dropout_mask=dropout_mask,
                                  dropout_p=dropout)
    return Target((q, k, v), module=module, forward_kwargs=kwargs,
                  torch_forward=None if dropout_mask is MASK_UNKNOWN else lambda params, q, k, v: reference(q, k, v))


def mha_target(
    dtype: np.dtype, *, batch: int | None = 2, queries: int = 3, keys: int | None = None, training: bool = False,
    masks: str | None = None, is_causal: bool = False, need_weights: bool = True, fast: bool = False,
    embed_dim: int = 8, num_heads: int = 2, attn_mask: str | None = None, key_padding_mask: str | None = None,
    average_attn_weights: bool = True, **options: Any,
) -> Target:
    """``MultiHeadAttention`` with non-zero biases; self-attention when ``keys`` is None.

    ``masks``: None, "bool" (key_padding_mask and a (L, S) attn_mask, True = not allowed)
    or "float" (key_padding_mask and a (N * H, L, S) attn_mask, added); ``attn_mask`` and
    ``key_padding_mask`` ("bool" or "float") give one of them alone, or one of each kind.
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
        return (batch, seq, features) if module.batch_first else (seq, batch, features)

    if keys is None:
        shapes = [layout(queries, embed_dim)]
    else:
        shapes = [layout(queries, embed_dim), layout(keys, module.kdim), layout(keys, module.vdim)]
    inputs = tuple(normal(dtype, *shapes, seed=14))
    kwargs = {"is_causal": is_causal, "need_weights": need_weights}
    if not average_attn_weights:
        kwargs["average_attn_weights"] = False
    if masks is not None:
        kwargs.update(attention_masks(masks, batch, num_heads, queries, keys or queries, module.dtype))
    for name, kind in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask)):
        if kind is not None:
            kwargs[name] = attention_masks(kind, batch, num_heads, queries, keys or queries, module.dtype)[name]
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


# Every implementation takes the options: the textbook pairs and the kernels.
MODERN_IMPLS = ["textbook", "textbook-flash", "dense", "flash"]
# The textbook pairs' entries take finite differences of every element; the kernels', which tests/test_kernels.py
# proves equal to them, along random directions (the torch comparison still checks every element).
DIRECTIONAL_IMPLS = ("dense", "flash")


def options_target(dtype: np.dtype, q_shape: tuple, k_shape: tuple, v_shape: tuple, *, impl: str,
                   sinks: bool = False, alibi: bool = False, mask: str | None = None, magnitude: float = 1.0,
                   **options: Any) -> Target:
    """The attention pair ``impl`` with the options; with ``sinks`` the sinks are the fourth input."""
    q, k, v, s = normal(dtype, q_shape, k_shape, v_shape, q_shape[-3:-2], seed=30)
    q = (magnitude * q).astype(dtype)  # scores up to ~ magnitude * sqrt(E): the soft-cap bends them
    if alibi:
        options["alibi_slopes"] = 2.0 ** -np.arange(1.0, q_shape[-3] + 1)
    if mask is not None:
        options["attn_mask"] = make_mask(mask, (q_shape[-2], k_shape[-2]), seed=31)
    pair_forward, backward = attention_pair(impl)

    def forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, sinks: np.ndarray | None = None) -> tuple:
        return pair_forward(q, k, v, sinks=sinks, **options)

    def torch_forward(q: Any, k: Any, v: Any, sinks: Any = None) -> Any:
        return torch_ops.attention_with_options(q, k, v, sinks, **options)

    return Target((q, k, v, s) if sinks else (q, k, v), forward, backward, torch_forward=torch_forward,
                  fast=impl in DIRECTIONAL_IMPLS)

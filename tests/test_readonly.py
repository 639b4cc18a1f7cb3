"""Inputs and upstream gradients are never written to: every public call works on read-only arrays.

Each call gets arrays with ``flags.writeable = False`` (so any in-place write
raises), and afterwards every array must still equal its copy taken before.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from helpers.impls import attention_impl

import numpy_attention as na
from numpy_attention import functional as F


def frozen(rng: np.random.Generator, *shape: int, dtype=np.float64) -> np.ndarray:
    array = rng.standard_normal(shape).astype(dtype)
    array.flags.writeable = False
    return array


def freeze(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def softmax_calls(rng, dtype):
    x = frozen(rng, 2, 3, 4, dtype=dtype)
    for axis in (-1, 0):
        y, cache = F.softmax_forward(x, axis=axis)
        yield [x], y, lambda dout, cache=cache: F.softmax_backward(dout, cache)


def linear_calls(rng, dtype):
    x, weight, bias = frozen(rng, 2, 3, 4, dtype=dtype), frozen(rng, 5, 4, dtype=dtype), frozen(rng, 5, dtype=dtype)
    for b in (bias, None):
        out, cache = F.linear_forward(x, weight, b)
        yield [x, weight, bias], out, lambda dout, cache=cache: F.linear_backward(dout, cache)


def attention_calls(rng, dtype):
    q, k, v = frozen(rng, 2, 4, 3, 4, dtype=dtype), frozen(rng, 2, 2, 5, 4, dtype=dtype), frozen(rng, 2, 2, 5, 3)
    v = freeze(v.astype(dtype))
    bool_mask = freeze(rng.random((3, 5)) > 0.3)
    float_mask = frozen(rng, 4, 1, 5)  # float64 even for float32 inputs: cast, never written
    empty_row = np.ones((3, 5), bool)
    empty_row[1] = False
    freeze(empty_row)
    for options in ({}, {"attn_mask": bool_mask}, {"attn_mask": float_mask}, {"attn_mask": empty_row},
                    {"is_causal": True, "dropout_p": 0.3}, {"scale": 0.2}):
        masks = [options["attn_mask"]] if "attn_mask" in options else []
        out, cache = F.attention_forward(q, k, v, **options, rng=np.random.default_rng(0))
        yield [q, k, v, *masks], out, lambda dout, cache=cache: F.attention_backward(dout, cache)
        na.scaled_dot_product_attention(q, k, v, **options, rng=np.random.default_rng(0))
    unbatched = frozen(rng, 3, 4, dtype=dtype)
    out, cache = F.attention_forward(unbatched, unbatched, unbatched)
    yield [unbatched], out, lambda dout, cache=cache: F.attention_backward(dout, cache)


def module_calls(rng, dtype):
    layer = na.Linear(4, 5, dtype=dtype, rng=rng)
    x = frozen(rng, 2, 3, 4, dtype=dtype)
    yield [x], layer(x), layer.backward
    attention = na.ScaledDotProductAttention(dropout=0.2, rng=rng)
    q, k, v = (frozen(rng, 2, 3, 4, dtype=dtype) for _ in range(3))
    mask = freeze(np.tri(3, dtype=bool))
    out, weights = attention(q, k, v, attn_mask=mask)
    yield [q, k, v, mask], out, attention.backward


def multihead_calls(rng, dtype):
    module = na.MultiHeadAttention(4, 2, dropout=0.2, add_bias_kv=True, add_zero_attn=True, num_kv_heads=1,
                                   dtype=dtype, rng=rng)
    query, key, value = frozen(rng, 2, 3, 4, dtype=dtype), frozen(rng, 2, 5, 4, dtype=dtype), frozen(rng, 2, 5, 4,
                                                                                                       dtype=dtype)
    padding = freeze(rng.random((2, 5)) < 0.3)
    float_mask = frozen(rng, 3, 5)
    causal = freeze(~np.tri(3, dtype=bool))
    for kwargs in ({"key_padding_mask": padding}, {"attn_mask": float_mask, "need_weights": False},
                   {"attn_mask": float_mask, "key_padding_mask": freeze(np.where(padding, -np.inf, 0.0))}):
        masks = list(kwargs.values())
        masks = [m for m in masks if isinstance(m, np.ndarray)]
        out, _ = module(query, key, value, **kwargs)
        yield [query, key, value, *masks], out, module.backward
    out, _ = module(query, attn_mask=causal, is_causal=True)
    yield [query, causal], out, module.backward
    unbatched = frozen(rng, 3, 4, dtype=dtype)
    out, _ = module(unbatched)
    yield [unbatched], out, module.backward


def flash_calls(rng, dtype):
    forward, backward = attention_impl("flash")
    q, k, v = frozen(rng, 2, 4, 3, 4, dtype=dtype), frozen(rng, 2, 2, 5, 4, dtype=dtype), frozen(rng, 2, 2, 5, 4,
                                                                                                     dtype=dtype)
    for options in ({"attn_mask": freeze(rng.random((3, 5)) > 0.3)}, {"attn_mask": frozen(rng, 4, 1, 5)},
                    {"is_causal": True, "dropout_p": 0.3}):
        masks = [options["attn_mask"]] if "attn_mask" in options else []
        out, cache = forward(q, k, v, **options, rng=np.random.default_rng(0), block_size=2)
        yield [q, k, v, *masks], out, lambda dout, cache=cache: backward(dout, cache)
    sdpa = na.ScaledDotProductAttention(impl="flash", dropout=0.2, rng=rng)
    out, _ = sdpa(q, k, v, is_causal=True)
    yield [q, k, v], out, sdpa.backward
    mha = na.MultiHeadAttention(4, 2, impl="flash", dtype=dtype, rng=rng)
    x = frozen(rng, 2, 3, 4, dtype=dtype)
    out, _ = mha(x, need_weights=False, key_padding_mask=freeze(np.array([[False, False, True]] * 2)))
    yield [x], out, mha.backward


def learning_calls(rng, dtype):
    indices = freeze(rng.integers(0, 5, size=(2, 3)))
    weight = frozen(rng, 5, 4, dtype=dtype)
    out, cache = F.embedding_forward(indices, weight, padding_idx=0)
    yield [indices, weight], out, lambda dout, cache=cache: F.embedding_backward(dout, cache)
    layer = na.Embedding(5, 4, padding_idx=1, dtype=dtype, rng=rng)
    yield [indices], layer(indices), layer.backward
    logits, target = frozen(rng, 2, 5, 3, dtype=dtype), rng.integers(0, 5, size=(2, 3))
    target[0, 0] = -100  # ignored
    freeze(target)
    loss, cache = F.cross_entropy_forward(logits, target, reduction="none")
    yield [logits, target], loss, lambda dout, cache=cache: F.cross_entropy_backward(dout, cache)


def as_tuple(grads) -> tuple:
    """Input gradients as a tuple: none (Embedding has no differentiable input), one, or several."""
    if grads is None:
        return ()
    return (grads,) if isinstance(grads, np.ndarray) else tuple(grads)


CALLS: dict[str, Callable] = {
    "softmax": softmax_calls,
    "linear": linear_calls,
    "attention": attention_calls,
    "modules": module_calls,
    "multihead": multihead_calls,
    "flash": flash_calls,
    "learning": learning_calls,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", sorted(CALLS))
def test_public_calls_accept_read_only_inputs_and_dout(family, dtype, rng):
    calls = 0
    for inputs, out, backward in CALLS[family](rng, dtype):
        copies = [x.copy() for x in inputs]
        dout = frozen(rng, *out.shape, dtype=dtype)
        dout_copy = dout.copy()
        first = backward(dout)
        second = backward(dout)  # the cache is not consumed or modified by a backward either
        for a, b in zip(as_tuple(first), as_tuple(second)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(dout, dout_copy)
        for x, copy in zip(inputs, copies):
            assert not x.flags.writeable
            np.testing.assert_array_equal(x, copy)
        calls += 1
    assert calls >= 2


def test_load_state_dict_accepts_read_only_values_and_keeps_them_apart(rng):
    layer = na.Linear(4, 3, rng=rng)
    state = {name: frozen(rng, *value.shape) for name, value in layer.params.items()}
    copies = {name: value.copy() for name, value in state.items()}
    layer.load_state_dict(state)
    for name, value in state.items():
        np.testing.assert_array_equal(value, copies[name])
        np.testing.assert_array_equal(layer.params[name], value)
        assert not np.shares_memory(layer.params[name], value)
    layer(frozen(rng, 2, 4))
    layer.backward(frozen(rng, 2, 3))  # training on after loading: the loaded arrays stay as they were
    for name, value in state.items():
        np.testing.assert_array_equal(value, copies[name])


def test_state_dict_is_a_copy(rng):
    layer = na.Linear(4, 3, rng=rng)
    state = layer.state_dict()
    state["weight"] += 1.0
    assert not np.array_equal(state["weight"], layer.params["weight"])

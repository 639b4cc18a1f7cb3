"""The score_mods pieces composed into attention with every option: the recipe the attention pairs follow.

``composed_attention_forward`` / ``composed_attention_backward`` are the derivation of
docs/derivations.md written out with the pieces (score_mod, visible, softmax_with_sink, sink_grad);
they are checked against central finite differences and against ``gradcheck.torch_ops.attention_with_options``
(plain torch ops, the masks as tril/triu triangles), with grouped-query heads, L != S, query_offset.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
from gradcheck import torch_ops
from numpy_attention.functional.score_mods import (
    score_mod_backward,
    score_mod_forward,
    sink_grad,
    softmax_with_sink,
    visible,
)
from numpy_attention.functional.softmax import softmax


class ComposedCache(NamedTuple):
    q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    P: np.ndarray
    P_sink: np.ndarray | None
    O: np.ndarray
    mod_cache: object
    scale: float
    group: int


def composed_attention_forward(q, k, v, sinks=None, *, attn_mask=None, is_causal=False, softcap=None,
                               alibi_slopes=None, window=None, query_offset=0):
    group = q.shape[-3] // k.shape[-3]
    K, V = np.repeat(k, group, axis=-3), np.repeat(v, group, axis=-3)  # (..., Hq, T, E), (..., Hq, T, Ev)
    scale = 1 / math.sqrt(q.shape[-1])
    query_pos, key_pos = np.arange(q.shape[-2]) + query_offset, np.arange(k.shape[-2])
    S, mod_cache = score_mod_forward(scale * q @ K.swapaxes(-1, -2), query_pos, key_pos,
                                     softcap=softcap, alibi_slopes=alibi_slopes)
    allowed = visible(query_pos, key_pos, is_causal=is_causal, window=window)
    if attn_mask is not None:
        allowed = allowed & attn_mask
    S = np.where(allowed, S, -np.inf)
    if sinks is None:
        P, P_sink = softmax(S), None
    else:
        P, P_sink = softmax_with_sink(S, sinks)
    O = P @ V
    return O, ComposedCache(q, K, V, P, P_sink, O, mod_cache, scale, group)


def composed_attention_backward(dO, cache):
    def sum_over_group(x):
        return x.reshape(*x.shape[:-3], -1, cache.group, *x.shape[-2:]).sum(axis=-3)

    dV = cache.P.swapaxes(-1, -2) @ dO
    dP = dO @ cache.V.swapaxes(-1, -2)
    D = np.sum(dO * cache.O, axis=-1, keepdims=True)
    dS = score_mod_backward(cache.P * (dP - D), cache.mod_cache)  # the gradient of the raw scaled scores
    dQ = cache.scale * dS @ cache.K
    dK = cache.scale * dS.swapaxes(-1, -2) @ cache.q
    grads = (dQ, sum_over_group(dK), sum_over_group(dV))
    return grads if cache.P_sink is None else (*grads, sink_grad(cache.P_sink, D))


SLOPES = 2.0 ** -np.arange(1.0, 5.0)  # 4 query heads
CONFIGS = {
    "softcap-causal": dict(softcap=1.5, is_causal=True),
    "alibi-window": dict(alibi_slopes=SLOPES, window=(2, 1)),
    "sinks-causal-window": dict(sinks=True, is_causal=True, window=(1, 0)),
    "everything-offset": dict(sinks=True, softcap=2.0, alibi_slopes=SLOPES, is_causal=True, window=(3, None),
                              query_offset=2),
    "sinks-empty-rows": dict(sinks=True, is_causal=True, query_offset=-2),  # queries 0, 1 see no key
    "empty-rows-no-sink": dict(softcap=3.0, is_causal=True, query_offset=-1, mask=True),
    "window-right-only": dict(window=(None, 0), alibi_slopes=SLOPES, mask=True),
}


def build(name, seed=0, magnitude=1.0):
    options = dict(CONFIGS[name])
    rng = np.random.default_rng(seed)
    q = magnitude * random_like(rng, (2, 4, 4, 5))  # 4 query heads share 2 key/value heads, L = 4, S = 6
    k, v = random_like(rng, (2, 2, 6, 5)), random_like(rng, (2, 2, 6, 3))
    inputs = (q, k, v, random_like(rng, (4,))) if options.pop("sinks", False) else (q, k, v)
    if options.pop("mask", False):
        options["attn_mask"] = rng.random((4, 6)) > 0.3
    return inputs, options


@pytest.mark.parametrize("name", list(CONFIGS))
def test_composed_attention_matches_finite_differences(name):
    inputs, options = build(name, magnitude=3.0)
    report = gradcheck.check(lambda *a: composed_attention_forward(*a, **options), composed_attention_backward,
                             inputs)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_composed_attention_matches_the_torch_reference(name):
    torch = require_torch()
    inputs, options = build(name, seed=1, magnitude=3.0)
    out, cache = composed_attention_forward(*inputs, **options)
    dout = random_like(np.random.default_rng(2), out.shape)
    tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
    out_t = torch_ops.attention_with_options(*tensors, **options)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-10
    for ours, tensor in zip(composed_attention_backward(dout, cache), tensors):
        assert rel_error(ours, tensor.grad.numpy()) < 1e-10
    assert np.isfinite(out).all()


def test_rows_without_a_visible_key_give_zero_output_with_and_without_sinks():
    for name in ("sinks-empty-rows", "empty-rows-no-sink"):
        inputs, options = build(name)
        out, cache = composed_attention_forward(*inputs, **options)
        empty = ~visible(np.arange(4) + options["query_offset"], np.arange(6), is_causal=True).any(axis=1)
        assert empty.any() and (out[..., empty, :] == 0).all()
        grads = composed_attention_backward(random_like(np.random.default_rng(3), out.shape), cache)
        assert (grads[0][..., empty, :] == 0).all()
        if cache.P_sink is not None:
            assert (cache.P_sink[..., empty, :] == 1).all()


def test_with_query_offset_zero_causal_matches_torch_sdpa():
    torch = require_torch()
    inputs, _ = build("softcap-causal")
    q, k, v = inputs
    out, _ = composed_attention_forward(q, k[..., :4, :], v[..., :4, :], is_causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a) for a in (q, k[..., :4, :], v[..., :4, :])), is_causal=True, enable_gqa=True)
    assert rel_error(out, expected.numpy()) < 1e-12

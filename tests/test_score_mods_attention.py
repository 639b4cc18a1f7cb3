"""The score_mods pieces in the attention pairs: every option, as the textbook pairs compose them.

The textbook pairs (``numpy_attention.functional.attention_forward`` and the tiled one) call
score_mod_forward/backward, visible and softmax_with_sink/sink_grad; here they are checked
against central finite differences, against ``gradcheck.torch_ops.attention_with_options``
(plain torch ops, the masks as tril/triu triangles), with grouped-query heads, L != T,
query_offset, and rows with no visible key.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
from gradcheck import torch_ops
from numpy_attention import functional as F
from numpy_attention.functional.score_mods import visible

PAIRS = {"textbook": (F.attention_forward, F.attention_backward),
         "textbook-flash": (lambda *a, **o: F.flash_attention_forward(*a, **o, block_size=(3, 2)),
                            F.flash_attention_backward)}


def forward(pair: str, q, k, v, sinks=None, **options):
    """The pair's forward, with the sinks as a fourth positional input (the checks vary every input)."""
    return PAIRS[pair][0](q, k, v, **options, **({} if sinks is None else {"sinks": sinks}))


SLOPES = 2.0 ** -np.arange(1.0, 5.0)  # 4 query heads
CONFIGS = {
    "softcap-causal": dict(softcap=1.5, is_causal=True),
    "alibi-window": dict(alibi_slopes=SLOPES, window=(2, 1)),
    "sinks-causal-window": dict(sinks=True, is_causal=True, window=(1, 0)),
    "everything-offset": dict(sinks=True, softcap=2.0, alibi_slopes=SLOPES, is_causal=True, window=(3, None),
                              query_offset=2),
    "sinks-empty-rows": dict(sinks=True, is_causal=True, query_offset=-2),  # queries 0, 1 see no key
    "empty-rows-no-sink": dict(softcap=3.0, window=(None, 0), query_offset=-1, mask=True),  # causal as a window
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


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_option_matches_finite_differences(name, pair):
    inputs, options = build(name, magnitude=3.0)
    report = gradcheck.check(lambda *a: forward(pair, *a, **options), PAIRS[pair][1], inputs)
    assert report.passed, str(report)


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_option_matches_the_torch_reference(name, pair):
    torch = require_torch()
    inputs, options = build(name, seed=1, magnitude=3.0)
    out, cache = forward(pair, *inputs, **options)
    dout = random_like(np.random.default_rng(2), out.shape)
    tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
    out_t = torch_ops.attention_with_options(*tensors, **options)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-10
    for ours, tensor in zip(PAIRS[pair][1](dout, cache), tensors):
        assert rel_error(ours, tensor.grad.numpy()) < 1e-10
    assert np.isfinite(out).all()


def test_rows_without_a_visible_key_give_zero_output_with_and_without_sinks():
    for name in ("sinks-empty-rows", "empty-rows-no-sink"):
        inputs, options = build(name)
        out, cache = forward("textbook", *inputs, **options)
        empty = ~visible(np.arange(4) + options["query_offset"], np.arange(6), is_causal=True).any(axis=1)
        assert empty.any() and (out[..., empty, :] == 0).all()
        grads = F.attention_backward(random_like(np.random.default_rng(3), out.shape), cache)
        assert (grads[0][..., empty, :] == 0).all()
        if cache.sink_weights is not None:
            assert (cache.sink_weights[..., empty, :] == 1).all()


def test_with_query_offset_zero_causal_matches_torch_sdpa():
    torch = require_torch()
    inputs, _ = build("softcap-causal")
    q, k, v = inputs
    out, _ = F.attention_forward(q, k[..., :4, :], v[..., :4, :], is_causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a) for a in (q, k[..., :4, :], v[..., :4, :])), is_causal=True, enable_gqa=True)
    assert rel_error(out, expected.numpy()) < 1e-12

"""MultiHeadAttention's bad input: a clear ValueError or TypeError naming the argument and the shapes."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from helpers.numerics import random_like

from numpy_attention import MultiHeadAttention
from numpy_attention.optional import TORCH_HINT


def _call(**kwargs):
    """A forward on a small valid problem, with some arguments replaced."""
    module = MultiHeadAttention(4, 2, kdim=3, vdim=5, rng=0)
    rng = np.random.default_rng(0)
    arguments = {"query": rng.standard_normal((2, 3, 4)), "key": rng.standard_normal((2, 6, 3)),
                 "value": rng.standard_normal((2, 6, 5))}
    arguments.update(kwargs)
    return module(**arguments)


BAD_INPUTS = [
    (lambda: MultiHeadAttention(6, 4), ValueError,
     r"embed_dim must be divisible by num_heads; got embed_dim=6, num_heads=4"),
    (lambda: MultiHeadAttention(6, 3, num_kv_heads=2), ValueError,
     r"num_heads must be a multiple of num_kv_heads; got num_heads=3, num_kv_heads=2"),
    (lambda: MultiHeadAttention(0, 1), ValueError, r"embed_dim must be a positive int; got 0"),
    (lambda: MultiHeadAttention(4, 2.0), TypeError, r"num_heads must be a positive int; got float 2.0"),
    (lambda: MultiHeadAttention(4, 2, dropout=1.0), ValueError, r"dropout must be in \[0, 1\); got 1.0"),
    (lambda: MultiHeadAttention(4, 2, impl="fast"), ValueError, r"impl must be one of \[.*'dense'.*\]; got 'fast'"),
    (lambda: MultiHeadAttention(4, 2, batch_first=1), TypeError, r"batch_first must be a bool; got int 1"),
    (lambda: MultiHeadAttention(4, 2, dtype=np.float16), TypeError, r"dtype must be np.float32 or np.float64"),
    (lambda: _call(query=np.zeros((2, 3, 5))), ValueError,
     r"query must have embed_dim = 4 features \(last dimension\); got shape \(2, 3, 5\)"),
    (lambda: _call(key=np.zeros((2, 6, 4))), ValueError,
     r"key must have kdim = 3 features \(last dimension\); got shape \(2, 6, 4\)"),
    (lambda: _call(value=np.zeros((2, 6, 4))), ValueError,
     r"value must have vdim = 5 features \(last dimension\); got shape \(2, 6, 4\)"),
    (lambda: _call(value=np.zeros((2, 5, 5))), ValueError,
     r"key and value must have the same sequence length and batch size; got key \(2, 6, 3\) and value \(2, 5, 5\)"),
    (lambda: _call(query=np.zeros((3, 3, 4))), ValueError,
     r"query and key must have the same batch size N \(inputs are \(N, L, E\), batch_first=True\); "
     r"got query \(3, 3, 4\) and key \(2, 6, 3\)"),
    (lambda: _call(query=np.zeros((1, 2, 3, 4))), ValueError,
     r"query must be 2 or 3-dimensional; got shape \(1, 2, 3, 4\)"),
    (lambda: _call(key=np.zeros((6, 3))), ValueError, r"query, key and value must all be 3-D .* or all 2-D"),
    (lambda: _call(query=np.zeros((2, 3, 4), np.float32)), TypeError,
     r"query must have dtype float64; got dtype float32"),
    (lambda: _call(query="x"), TypeError, r"query must be a NumPy array of float32 or float64; got str"),
    (lambda: _call(query=np.zeros((2, 3, 4), bool)), TypeError, r"query must have dtype float32 or float64"),
    (lambda: _call(value=None), ValueError, r"key and value must both be given .* got key given and value None"),
    (lambda: _call(key_padding_mask=np.zeros((2, 5), bool)), ValueError,
     r"key_padding_mask must have shape \(N, S\) = \(2, 6\); got shape \(2, 5\)"),
    (lambda: _call(key_padding_mask=np.zeros(6, bool)), ValueError,
     r"key_padding_mask must have shape \(N, S\) = \(2, 6\); got shape \(6,\)"),
    (lambda: _call(query=np.zeros((3, 4)), key=np.zeros((6, 3)), value=np.zeros((6, 5)),
                   key_padding_mask=np.zeros((1, 6), bool)), ValueError,
     r"key_padding_mask must have shape \(S,\) for unbatched input = \(6,\); got shape \(1, 6\)"),
    (lambda: _call(attn_mask=np.zeros((6, 3), bool)), ValueError,
     r"attn_mask must have shape \(L, S\) = \(3, 6\) or \(N \* num_heads, L, S\) = \(4, 3, 6\); got shape \(6, 3\)"),
    (lambda: _call(attn_mask=np.zeros((2, 3, 6), bool)), ValueError, r"got shape \(2, 3, 6\)"),
    (lambda: _call(query=np.zeros((3, 4)), key=np.zeros((6, 3)), value=np.zeros((6, 5)),
                   attn_mask=np.zeros((4, 3, 6))), ValueError,
     r"attn_mask must have shape \(L, S\) = \(3, 6\) or \(num_heads, L, S\) = \(2, 3, 6\); got shape \(4, 3, 6\)"),
    (lambda: _call(attn_mask=np.zeros((3, 6), int)), TypeError,
     r"attn_mask must have dtype bool or a float dtype; got dtype int"),
    (lambda: _call(attn_mask=np.zeros((3, 6)), key_padding_mask=np.zeros((2, 6), bool)), TypeError,
     r"key_padding_mask and attn_mask must both be boolean or both float; "
     r"got key_padding_mask of dtype bool and attn_mask of dtype float64"),
    (lambda: _call(is_causal=1), TypeError, r"is_causal must be a bool; got int 1"),
    (lambda: _call(need_weights=None), TypeError, r"need_weights must be a bool; got NoneType None"),
]


@pytest.mark.parametrize("make, error, message", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_bad_input_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_backward_needs_a_forward_and_a_dout_of_its_shape(rng):
    module = MultiHeadAttention(4, 2, rng=0)
    with pytest.raises(ValueError, match=r"MultiHeadAttention.backward\(\) was called before forward\(\)"):
        module.backward(np.zeros((2, 3, 4)))
    out, _ = module(random_like(rng, (2, 3, 4)))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3, 4\); got \(2, 4, 3\)"):
        module.backward(np.zeros((2, 4, 3)))
    with pytest.raises(TypeError, match=r"dout must have dtype float64; got dtype float32"):
        module.backward(np.zeros((2, 3, 4), np.float32))
    assert not any(g.any() for g in module.grads.values())  # a rejected backward accumulates nothing


def test_torch_interop_without_torch_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match="to_torch needs PyTorch.*" + re.escape(TORCH_HINT)):
        MultiHeadAttention(4, 2).to_torch()
    with pytest.raises(ImportError, match="from_torch needs PyTorch.*" + re.escape(TORCH_HINT)):
        MultiHeadAttention.from_torch(object())

"""Array subclasses and byte orders: read as the plain numbers they hold, or refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.impls import IMPLS, attention_impl

import numpy_attention as na


def qkv(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 4)), rng.standard_normal((6, 4)), rng.standard_normal((6, 3))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["matrix", "unmasked-masked-array", "read-only-view"])
def test_an_unambiguous_subclass_gives_the_plain_arrays_result(impl, kind):
    forward, backward = attention_impl(impl)
    q, k, v = qkv()
    wrap = {"matrix": np.matrix, "unmasked-masked-array": np.ma.MaskedArray,
            "read-only-view": lambda x: np.lib.stride_tricks.as_strided(x, writeable=False)}[kind]
    out, cache = forward(wrap(q), wrap(k), wrap(v))
    expected, expected_cache = forward(q, k, v)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, expected)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    for grad, reference in zip(backward(wrap(dout) if kind != "matrix" else dout, cache),
                               backward(dout, expected_cache)):
        assert type(grad) is np.ndarray
        np.testing.assert_array_equal(grad, reference)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_masked_array_with_masked_entries_is_refused_naming_the_argument(impl):
    forward, _ = attention_impl(impl)
    q, k, v = qkv()
    masked = np.ma.MaskedArray(k, mask=k > 1.0)
    with pytest.raises(TypeError, match=r"k is a MaskedArray with \d+ masked entries.*attn_mask"):
        forward(q, masked, v)
    with pytest.raises(TypeError, match="attn_mask is a MaskedArray"):
        forward(q, k, v, attn_mask=np.ma.MaskedArray(np.ones((5, 6), bool), mask=np.eye(5, 6, dtype=bool)))


@pytest.mark.parametrize("impl", IMPLS)
def test_the_other_byte_order_is_refused_saying_which_is_expected(impl):
    forward, _ = attention_impl(impl)
    q, k, v = qkv()
    swapped = v.astype(v.dtype.newbyteorder("S"))
    np.testing.assert_array_equal(swapped, v)  # the same numbers, stored the other way round
    with pytest.raises(TypeError, match=r"v must be in the machine's native byte order \(dtype <f8\); got dtype >f8"):
        forward(q, k, swapped)


def test_multi_head_attention_with_no_keys_and_a_padding_mask_works_as_without_one():
    module = na.MultiHeadAttention(4, 2, batch_first=True, rng=0)
    query, keys = np.random.default_rng(2).standard_normal((2, 3, 4)), np.zeros((2, 0, 4))
    out, weights = module(query, keys, keys, key_padding_mask=np.zeros((2, 0), dtype=bool))
    expected, _ = module(query, keys, keys)
    np.testing.assert_array_equal(out, expected)
    assert weights.shape == (2, 3, 0)
    dquery, dkey, dvalue = module.backward(np.ones_like(out))
    assert dkey.shape == dvalue.shape == (2, 0, 4) and np.all(dquery == 0)

"""NaN and infinity spread through every attention implementation as through torch's MATH backend.

Each case plants one non-finite number (an infinite key, a +inf float mask entry,
a NaN in the upstream gradient under a causal mask, a NaN value with a fully
masked query row) and compares, for the output and every gradient, where the
NaNs and infinities fall and the finite values, with torch's
``scaled_dot_product_attention`` on its MATH backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.impls import IMPLS, TILED_IMPLS, attention_impl
from helpers.numerics import require_torch


def base(seed: int = 0):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((1, 2, 6, 3)), rng.standard_normal((1, 2, 7, 3)), rng.standard_normal((1, 2, 7, 4))
    return q, k, v, rng.standard_normal((1, 2, 6, 4))


def case(name: str):
    """(q, k, v, dout, options) with one non-finite number planted."""
    q, k, v, dout = base()
    options = {}
    if name == "inf-key":
        k[0, 1, 3, 0] = np.inf
    elif name == "minus-inf-key":
        k[0, 0, 2, 1] = -np.inf
    elif name == "inf-in-float-mask":
        mask = np.random.default_rng(1).standard_normal((6, 7))
        mask[2, 4] = np.inf
        options["attn_mask"] = mask
    elif name == "nan-dout-causal":
        dout[0, 1, 4, 2] = np.nan
        options["is_causal"] = True
    elif name == "nan-query-causal":
        q[0, 0, 1, 0] = np.nan
        options["is_causal"] = True
    elif name == "nan-value-fully-masked-row":
        v[0, 0, 5, 1] = np.nan
        mask = np.ones((6, 7), dtype=bool)
        mask[3] = False
        options["attn_mask"] = mask
    elif name == "nan-masked-key":
        k[0, 1, 6, 0] = np.nan  # behind the causal mask of every query but the last
        options["is_causal"] = True
    return q, k, v, dout, options


CASES = ["inf-key", "minus-inf-key", "inf-in-float-mask", "nan-dout-causal", "nan-query-causal",
         "nan-value-fully-masked-row", "nan-masked-key"]


def torch_math(q, k, v, dout, options):
    torch = require_torch()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    mask = options.get("attn_mask")
    with sdpa_kernel(SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(
            *tensors, attn_mask=None if mask is None else torch.tensor(mask), is_causal=options.get("is_causal", False))
    out.backward(torch.tensor(dout))
    return [out.detach().numpy(), *(t.grad.numpy() for t in tensors)]


def ours(impl: str, q, k, v, dout, options, **extra):
    forward, backward = attention_impl(impl)
    out, cache = forward(q, k, v, **options, **extra)
    return [out, *backward(dout, cache)]


def assert_same_non_finite_and_values(got, expected):
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, expected):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name}: NaN placement")
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=f"{name}: inf placement")
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_numbers_spread_as_in_torch(impl, name):
    q, k, v, dout, options = case(name)
    expected = torch_math(q, k, v, dout, options)
    assert any(np.isnan(x).any() for x in expected), "the case must plant a NaN somewhere"
    extra = {"block_size": 2} if impl in TILED_IMPLS else {}
    with np.errstate(all="raise"):  # no RuntimeWarning either: NaN is the intended result
        got = ours(impl, q, k, v, dout, options, **extra)
    assert_same_non_finite_and_values(got, expected)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("impl", TILED_IMPLS)
@pytest.mark.parametrize("block_size", [1, 3, (4, 2), None], ids=str)
def test_non_finite_numbers_spread_the_same_for_every_tile_shape(impl, name, block_size):
    q, k, v, dout, options = case(name)
    assert_same_non_finite_and_values(ours(impl, q, k, v, dout, options, block_size=block_size),
                                      ours("textbook", q, k, v, dout, options))


# Today's options on top of each planted number: the kernels skip keys outside a band only where
# every input is finite, so NaN and inf must reach the same entries as in the textbook pair.
OPTIONS = {
    "window-offset": dict(window=(1, 1), query_offset=1),
    "softcap-alibi-sinks": dict(softcap=2.0, alibi_slopes=np.array([0.5, 0.25]), sinks=np.array([0.5, -1.0])),
}


@pytest.mark.parametrize("extra_options", sorted(OPTIONS))
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("impl", [impl for impl in IMPLS if impl != "textbook"])
def test_non_finite_numbers_spread_with_the_options_as_in_the_textbook_pair(impl, name, extra_options):
    q, k, v, dout, options = case(name)
    options = {**options, **OPTIONS[extra_options]}
    extra = {"block_size": 2} if impl in TILED_IMPLS else {}
    got, expected = ours(impl, q, k, v, dout, options, **extra), ours("textbook", q, k, v, dout, options)
    assert len(got) == len(expected)
    assert any(np.isnan(x).any() for x in expected), "the case must plant a NaN somewhere"
    assert_same_non_finite_and_values(got, expected)

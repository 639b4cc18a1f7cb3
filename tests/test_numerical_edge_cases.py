"""Numerical behaviour at the edges: dtypes, huge scores, fully masked rows, NaN, empty shapes.

Every test here turns any warning into an error (a RuntimeWarning from an
overflow or a 0/0 is a bug even when the result happens to be right).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.impls import IMPLS, attention_impl
from helpers.numerics import random_like, rel_error, require_torch
from helpers.precision import assert_float32_close, attention_error_scales

import numpy_attention as na
from numpy_attention import functional as F

pytestmark = pytest.mark.filterwarnings("error")


def attention_pair(q, k, v, dout=None, seed=0, impl="dense", **options):
    """Forward and backward with a seeded upstream gradient: (out, weights or None for flash, (dq, dk, dv))."""
    forward, backward = attention_impl(impl)
    out, cache = forward(q, k, v, **options, **({"block_size": 2} if impl == "flash" else {}))
    if dout is None:
        dout = random_like(np.random.default_rng(seed), out.shape, out.dtype)
    return out, getattr(cache, "weights", None), backward(dout, cache)


def torch_attention(torch, q, k, v, dout, attn_mask=None, **options):
    """torch's SDPA output and gradients as NumPy arrays."""
    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    mask = None if attn_mask is None else torch.tensor(attn_mask)
    gqa = q.ndim > 2 and q.shape[-3] != k.shape[-3]
    out = torch.nn.functional.scaled_dot_product_attention(*tensors, attn_mask=mask, enable_gqa=gqa, **options)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), tuple(t.grad.numpy() for t in tensors)


def assert_matches_torch(q, k, v, dout, impl="dense", **options):
    """Our output and gradients equal torch's SDPA to 1e-10 (relative, float64)."""
    torch = require_torch()
    out, _, grads = attention_pair(q, k, v, dout, impl=impl, **options)
    out_t, grads_t = torch_attention(torch, q, k, v, dout, **options)
    assert rel_error(out, out_t) < 1e-10
    for name, grad, grad_t in zip("qkv", grads, grads_t):
        assert rel_error(grad, grad_t) < 1e-10, name


# ---------------------------------------------------------------- dtypes


def every_op(dtype, rng):
    """Each public computation once, yielding (name, array) for every output and gradient."""
    x = random_like(rng, (2, 3, 5), dtype)
    y, cache = F.softmax_forward(x)
    yield "softmax", y
    yield "softmax dx", F.softmax_backward(random_like(rng, y.shape, dtype), cache)

    weight, bias = random_like(rng, (4, 5), dtype), random_like(rng, (4,), dtype)
    out, cache = F.linear_forward(x, weight, bias)
    yield "linear", out
    grads = F.linear_backward(random_like(rng, out.shape, dtype), cache)
    yield from zip(("linear dx", "linear dweight", "linear dbias"), grads)
    q, k, v = (random_like(rng, s, dtype) for s in ((2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)))
    masks = {"float64 mask": rng.standard_normal((3, 5)), "bool mask": rng.random((3, 5)) > 0.3, "causal": None}
    for label, mask in masks.items():
        out, cache = F.attention_forward(q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=0.2, scale=0.5,
                                         rng=rng)
        yield f"attention ({label})", out
        yield f"attention weights ({label})", cache.weights
        grads = F.attention_backward(random_like(rng, out.shape, dtype), cache)
        yield from zip((f"d{name} ({label})" for name in "qkv"), grads)
    yield "scaled_dot_product_attention", na.scaled_dot_product_attention(q, k, v)

    layer = na.Linear(5, 4, dtype=dtype, rng=rng)
    out = layer(x)
    yield "Linear", out
    yield "Linear dx", layer.backward(random_like(rng, out.shape, dtype))
    yield from ((f"Linear grads[{n}]", g) for n, g in layer.grads.items())
    sdpa = na.ScaledDotProductAttention(dropout=0.1, rng=rng)
    out, weights = sdpa(q, k, v)
    yield "ScaledDotProductAttention", out
    yield from zip(("SDPA dq", "SDPA dk", "SDPA dv"), sdpa.backward(random_like(rng, out.shape, dtype)))

    mha = na.MultiHeadAttention(4, 2, dropout=0.1, add_bias_kv=True, add_zero_attn=True, num_kv_heads=1,
                                dtype=dtype, rng=rng)
    query, key, value = (random_like(rng, (2, n, 4), dtype) for n in (3, 5, 5))
    padding = rng.random((2, 5)) < 0.3  # float64 masks cast, bool masks stay bool
    for kwargs in ({"key_padding_mask": padding}, {"attn_mask": rng.standard_normal((3, 5)), "need_weights": False}):
        out, weights = mha(query, key, value, average_attn_weights=False, **kwargs)
        yield "MultiHeadAttention", out
        if weights is not None:
            yield "MultiHeadAttention weights", weights
        yield from zip(("MHA dquery", "MHA dkey", "MHA dvalue"), mha.backward(random_like(rng, out.shape, dtype)))
    out, _ = mha(query, is_causal=True)
    yield "MHA self-attention dx", mha.backward(random_like(rng, out.shape, dtype))
    yield from ((f"MHA grads[{n}]", g) for n, g in mha.grads.items())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_output_and_gradient_keeps_the_input_dtype(dtype, rng):
    results = list(every_op(dtype, rng))
    assert len(results) > 40
    for name, array in results:
        assert array.dtype == dtype, f"{name}: {array.dtype}"


def test_integer_inputs_become_float64_everywhere(rng):
    ints = rng.integers(-3, 4, size=(2, 3, 4))
    y, cache = F.softmax_forward(ints)
    assert y.dtype == F.softmax_backward(ints, cache).dtype == np.float64
    out, cache = F.linear_forward(ints, rng.integers(-2, 3, size=(5, 4)))
    assert out.dtype == np.float64 and all(g.dtype == np.float64 for g in F.linear_backward(out, cache)[:2])
    out, cache = F.attention_forward(ints, ints, ints)
    np.testing.assert_allclose(out, F.attention_forward(*(ints.astype(float),) * 3)[0], rtol=0, atol=0)
    assert all(g.dtype == np.float64 for g in F.attention_backward(out, cache))


# ---------------------------------------------------------------- huge scores


def huge_scores(rng):
    """q, k with scores near 1e300 and an exact tie: query 0 scores keys 0 and 2 alike.

    Scores that large saturate the softmax to one-hot rows, whose gradient is 0.
    The tie keeps query 0 at weights 1/2, 1/2, so its gradients are large and
    non-zero: k0 and k2 differ except in the one coordinate q0 looks at.
    """
    q = rng.standard_normal((2, 3, 4)) * 1e150
    k = rng.standard_normal((2, 5, 4)) * 1e150
    q[:, 0, 1:] = 0.0
    q[:, 0, 0] = 3e150
    k[:, 0, 0] = k[:, 2, 0] = np.abs(k[:, :, 0]).max(axis=1) + 1e150
    return q, k


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_scores_of_1e300_give_finite_outputs_and_gradients(impl, rng):
    q, k = huge_scores(rng)
    v, dout = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3, 3))
    out, weights, grads = attention_pair(q, k, v, dout, impl=impl)
    scores = np.abs(q @ k.swapaxes(-1, -2) / 2)
    assert scores.max() > 1e300 and np.all(np.isfinite(scores))
    for array in (out, *grads):
        assert np.all(np.isfinite(array))
    if weights is not None:
        np.testing.assert_array_equal(weights[:, 0, [0, 2]], 0.5)
    np.testing.assert_allclose(out[:, 0], (v[:, 0] + v[:, 2]) / 2, rtol=1e-15)
    # d out0 / d q0 = scale/4 (dP0 - dP2)(k0 - k2), with dP_j = dout0 . v_j
    d_p = np.einsum("bc,bjc->bj", dout[:, 0], v)
    expected_dq0 = 0.5 / 4 * (d_p[:, 0] - d_p[:, 2])[:, None] * (k[:, 0] - k[:, 2])
    assert np.abs(expected_dq0).max() > 1e149
    assert rel_error(grads[0][:, 0], expected_dq0) < 1e-12


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_scores_of_1e300_match_torch(impl, rng):
    q, k = huge_scores(rng)
    assert_matches_torch(q, k, rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3, 3)), impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_scores_of_1e4_give_finite_results_close_to_float64(impl, rng):
    # Coordinate 0 of every q and k is 150, so every score is about 150^2 / sqrt(8) ~ 8e3;
    # the other coordinates add O(1) parts that still decide the softmax.
    q, k = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 6, 8))
    q[..., 0] = k[..., 0] = 150.0
    v, dout = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 3, 3))
    q, k, v, dout = (x.astype(np.float32).astype(np.float64) for x in (q, k, v, dout))  # the same data in both
    out64, w64, grads64 = attention_pair(q, k, v, dout)
    q32, k32, v32, dout32 = (x.astype(np.float32) for x in (q, k, v, dout))
    out32, w32, grads32 = attention_pair(q32, k32, v32, dout32, impl=impl)
    score_size, magnitudes = attention_error_scales(q, k, v, dout, w64, 1 / np.sqrt(8))
    assert 5e3 < score_size < 1e5
    assert 0.01 < w64.max(-1).min() < 0.99  # the softmax is not saturated: this test has teeth
    for name, a32, a64 in [("out", out32, out64), *zip(("dq", "dk", "dv"), grads32, grads64)]:
        assert np.all(np.isfinite(a32)), name
        assert_float32_close(name, a32, a64, magnitudes[name], score_size)
    if w32 is not None:
        assert_float32_close("weights", w32, w64, np.ones_like(w64), score_size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_at_the_limits_of_the_dtype(dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0], [-big, -big, -big], [-np.inf, big, big]], dtype=dtype)
    y, cache = F.softmax_forward(x)
    np.testing.assert_array_equal(y, np.array([[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5]], dtype=dtype))
    dx = F.softmax_backward(np.arange(9, dtype=dtype).reshape(3, 3), cache)
    assert dx.dtype == dtype and np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx.sum(-1), 0, atol=10 * np.finfo(dtype).eps)


def test_float64_mask_of_finfo_min_blocks_keys_in_float32(rng):
    q, k, v = (random_like(rng, (3, 4), np.float32) for _ in range(3))
    mask = np.zeros((3, 3))
    mask[:, 1] = np.finfo(np.float64).min  # -inf once cast to float32, silently
    blocked = np.array([[True, False, True]] * 3)
    out, weights, _ = attention_pair(q, k, v, attn_mask=mask)
    reference, reference_weights, _ = attention_pair(q, k, v, attn_mask=blocked)
    np.testing.assert_array_equal(weights[:, 1], 0)
    np.testing.assert_allclose(out, reference, rtol=1e-6)


# ---------------------------------------------------------------- fully masked rows

FULLY_MASKED = {
    "bool": lambda: np.array([[True, False, True, True], [False] * 4, [True] * 4]),
    "float": lambda: np.array([[0.0, -np.inf, 0.5, 0.0], [-np.inf] * 4, [0.1, 0.2, 0.3, 0.4]]),
    "bool-all": lambda: np.zeros((3, 4), bool),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
@pytest.mark.parametrize("kind", sorted(FULLY_MASKED))
def test_fully_masked_rows_give_zero_output_and_zero_gradient(kind, dropout_p, dtype, impl, rng):
    mask = FULLY_MASKED[kind]()
    empty_rows = ~np.isfinite(np.where(mask.dtype == bool, np.where(mask, 0.0, -np.inf), mask)).any(-1)
    q, k, v = random_like(rng, (2, 3, 5), dtype), random_like(rng, (2, 4, 5), dtype), random_like(rng, (2, 4, 3), dtype)
    dout = random_like(rng, (2, 3, 3), dtype)
    options = {"attn_mask": mask, "dropout_p": dropout_p, "impl": impl}
    out, weights, (dq, dk, dv) = attention_pair(q, k, v, dout, **options, rng=np.random.default_rng(1))
    for array in (out, dq, dk, dv):
        assert np.all(np.isfinite(array))
    assert not out[:, empty_rows].any() and not dq[:, empty_rows].any()
    assert weights is None or not weights[:, empty_rows].any()
    # The masked rows contribute nothing to dk, dv: zeroing their upstream gradient changes nothing.
    silent = dout.copy()
    silent[:, empty_rows] = 0
    _, _, (_, dk_silent, dv_silent) = attention_pair(q, k, v, silent, **options, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(dk, dk_silent)
    np.testing.assert_array_equal(dv, dv_silent)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", sorted(FULLY_MASKED))
def test_fully_masked_rows_match_torch(kind, impl, rng):
    q, k, v = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 4, 3))
    assert_matches_torch(q, k, v, rng.standard_normal((2, 3, 3)), impl=impl, attn_mask=FULLY_MASKED[kind]())


# ---------------------------------------------------------------- NaN


def nan_cases(rng):
    """(name, q, k, v, options) with one NaN placed where a mask may or may not hide it."""
    q, k, v = rng.standard_normal((1, 2, 4, 3)), rng.standard_normal((1, 2, 5, 3)), rng.standard_normal((1, 2, 5, 2))
    blocks_key_3 = np.ones((4, 5), bool)
    blocks_key_3[:, 3] = False
    float_blocks_key_3 = np.where(blocks_key_3, 0.0, -np.inf)

    def with_nan(array, index):
        array = array.copy()
        array[index] = np.nan
        return array

    yield "q", with_nan(q, (0, 1, 2, 0)), k, v, {}
    yield "k", q, with_nan(k, (0, 0, 3, 1)), v, {}
    yield "v", q, k, with_nan(v, (0, 1, 3, 1)), {}
    yield "k-masked-bool", q, with_nan(k, (0, 0, 3, 1)), v, {"attn_mask": blocks_key_3}
    yield "k-masked-float", q, with_nan(k, (0, 0, 3, 1)), v, {"attn_mask": float_blocks_key_3}
    yield "v-masked-bool", q, k, with_nan(v, (0, 1, 3, 1)), {"attn_mask": blocks_key_3}
    yield "k-after-causal", q, with_nan(k, (0, 0, 4, 1)), v, {"is_causal": True}
    yield "v-after-causal", q, k, with_nan(v, (0, 1, 4, 0)), {"is_causal": True}
    yield "mask", q, k, v, {"attn_mask": with_nan(float_blocks_key_3, (2, 1))}
    yield "scale", q, k, v, {"scale": 0.0}  # not a NaN: the control case, everything finite


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_propagates_exactly_as_in_torch(impl, rng):
    torch = require_torch()
    for name, q, k, v, options in nan_cases(rng):
        dout = rng.standard_normal((1, 2, 4, 2))
        out, _, grads = attention_pair(q, k, v, dout, impl=impl, **options)
        out_t, grads_t = torch_attention(torch, q, k, v, dout, **options)
        for label, ours, theirs in [("out", out, out_t), *zip(("dq", "dk", "dv"), grads, grads_t)]:
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: {label}")
            finite = ~np.isnan(theirs)
            assert rel_error(ours[finite], theirs[finite]) < 1e-10, f"{name}: {label}"


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_is_neither_hidden_nor_spread_beyond_its_reach(impl, rng):
    cases = {name: (q, k, v, options) for name, q, k, v, options in nan_cases(rng)}
    out, _, _ = attention_pair(*cases["q"][:3], impl=impl)
    # A NaN query row poisons only its own output row.
    assert np.isnan(out[0, 1, 2]).all() and np.isfinite(np.delete(out[0, 1], 2, axis=0)).all()
    assert np.isfinite(out[0, 0]).all()
    # A NaN key reaches every query of its head, even those that mask it (as torch adds masks).
    for name in ("k", "k-masked-bool", "k-masked-float", "k-after-causal"):
        out, _, _ = attention_pair(*cases[name][:3], impl=impl, **cases[name][3])
        assert np.isnan(out[0, 0]).all() and np.isfinite(out[0, 1]).all(), name
    # A NaN value reaches one feature column of its head's outputs.
    out, _, _ = attention_pair(*cases["v"][:3], impl=impl)
    assert np.isnan(out[0, 1, :, 1]).all() and np.isfinite(out[0, 1, :, 0]).all() and np.isfinite(out[0, 0]).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_in_dout_reaches_the_gradients(impl, rng):
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    dout = rng.standard_normal((3, 2))
    dout[1, 0] = np.nan
    _, _, (dq, dk, dv) = attention_pair(q, k, v, dout, impl=impl)
    assert np.isnan(dq[1]).all() and np.isfinite(dq[[0, 2]]).all()
    assert np.isnan(dk).all() and np.isnan(dv[:, 0]).all() and np.isfinite(dv[:, 1]).all()


# ---------------------------------------------------------------- empty shapes

EMPTY_SHAPES = {  # q, k, v shapes
    "batch-0": ((0, 2, 3, 4), (0, 2, 5, 4), (0, 2, 5, 3)),
    "batch-0-3d": ((0, 3, 4), (0, 5, 4), (0, 5, 3)),
    "broadcast-to-batch-0": ((0, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3)),
    "L-0": ((2, 0, 4), (2, 5, 4), (2, 5, 3)),
    "L-0-unbatched": ((0, 4), (5, 4), (5, 3)),
    "S-0": ((2, 3, 4), (2, 0, 4), (2, 0, 3)),
    "S-0-unbatched": ((3, 4), (0, 4), (0, 3)),
    "S-0-gqa": ((1, 4, 3, 4), (1, 2, 0, 4), (1, 2, 0, 3)),
    "E-0": ((2, 3, 0), (2, 5, 0), (2, 5, 3)),
    "Ev-0": ((2, 3, 4), (2, 5, 4), (2, 5, 0)),
}


EMPTY_CASES = [pytest.param(case, impl, id=f"{case}-{impl}") for case in sorted(EMPTY_SHAPES) for impl in IMPLS]


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case, impl", EMPTY_CASES)
def test_empty_shapes_give_outputs_of_the_right_shape(case, impl, dtype, is_causal, rng):
    q, k, v = (random_like(rng, s, dtype) for s in EMPTY_SHAPES[case])
    out, weights, grads = attention_pair(q, k, v, is_causal=is_causal, dropout_p=0.1, rng=rng, impl=impl)
    batch = np.broadcast_shapes(q.shape[:-3], k.shape[:-3]) if q.ndim > 2 else ()
    heads = q.shape[-3:-2] if q.ndim > 2 else ()
    assert out.shape == (*batch, *heads, q.shape[-2], v.shape[-1]) and out.dtype == dtype
    assert weights is None or weights.shape == (*batch, *heads, q.shape[-2], k.shape[-2])
    for grad, x in zip(grads, (q, k, v)):
        assert grad.shape == x.shape and grad.dtype == dtype and np.all(np.isfinite(grad))
    if k.shape[-2] == 0:  # no keys: every row is fully masked, so output 0 and gradient 0, as in torch
        assert not out.any() and not grads[0].any()


@pytest.mark.parametrize("case, impl", EMPTY_CASES)
def test_empty_shapes_match_torch(case, impl, rng):
    q, k, v = (rng.standard_normal(s) for s in EMPTY_SHAPES[case])
    assert_matches_torch(q, k, v, rng.standard_normal((*q.shape[:-1], v.shape[-1])), impl=impl)


def test_empty_softmax_and_linear(rng):
    for shape, axis in [((2, 0), -1), ((0, 3), -1), ((0, 3), 0), ((2, 0, 3), 1)]:
        x = np.zeros(shape)
        y, cache = F.softmax_forward(x, axis=axis)
        assert y.shape == shape and F.softmax_backward(np.zeros(shape), cache).shape == shape
    for x_shape, w_shape in [((0, 4), (3, 4)), ((2, 0), (3, 0)), ((2, 4), (0, 4)), ((2, 0, 4), (3, 4))]:
        x, weight, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        out, cache = F.linear_forward(x, weight, bias)
        dout = rng.standard_normal(out.shape)
        dx, dweight, dbias = F.linear_backward(dout, cache)
        assert out.shape == (*x_shape[:-1], w_shape[0])
        assert dx.shape == x.shape and dweight.shape == weight.shape and dbias.shape == bias.shape
        rows = int(np.prod(x_shape[:-1]))
        np.testing.assert_allclose(dweight, dout.reshape(rows, w_shape[0]).T @ x.reshape(rows, w_shape[1]))


def test_modules_accept_empty_batches(rng):
    layer = na.Linear(4, 3, rng=rng)
    assert layer(np.zeros((0, 4))).shape == (0, 3)
    assert layer.backward(np.zeros((0, 3))).shape == (0, 4) and not layer.grads["weight"].any()
    attention = na.ScaledDotProductAttention()
    out, weights = attention(np.ones((2, 3, 4)), np.ones((2, 0, 4)), np.ones((2, 0, 5)))
    assert out.shape == (2, 3, 5) and not out.any() and weights.shape == (2, 3, 0)
    dq, dk, dv = attention.backward(rng.standard_normal((2, 3, 5)))
    assert not dq.any() and dk.shape == (2, 0, 4) and dv.shape == (2, 0, 5)


MHA_EMPTY = {  # (query, key) shapes, batch first; value like key
    "batch-0": ((0, 3, 4), (0, 5, 4)),
    "L-0": ((2, 0, 4), (2, 5, 4)),
    "S-0": ((2, 3, 4), (2, 0, 4)),
    "L-0-unbatched": ((0, 4), (5, 4)),
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("case", sorted(MHA_EMPTY))
def test_multihead_attention_accepts_empty_batches_and_sequences(case, need_weights, rng):
    query_shape, key_shape = MHA_EMPTY[case]
    module = na.MultiHeadAttention(4, 2, rng=rng)
    bias = module.params["out_proj.bias"]
    bias[...] = rng.standard_normal(bias.shape)
    query, key = rng.standard_normal(query_shape), rng.standard_normal(key_shape)
    out, weights = module(query, key, key, need_weights=need_weights)
    assert out.shape == query.shape
    if need_weights:
        assert weights.shape == (*query_shape[:-1], key_shape[-2])
    dquery, dkey, dvalue = module.backward(rng.standard_normal(out.shape))
    assert dquery.shape == query.shape and dkey.shape == dvalue.shape == key.shape
    if case == "S-0":
        np.testing.assert_array_equal(out, np.broadcast_to(bias, out.shape))  # no key: attention output 0

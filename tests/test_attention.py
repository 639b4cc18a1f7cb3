import numpy as np
import pytest
from helpers.attention_cases import BAD_CALLS, CASES
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients, torch_ops
from numpy_attention import scaled_dot_product_attention
from numpy_attention.functional import attention_backward, attention_forward

CASE_IDS = [case.name for case in CASES]


def forward_with_seed(q, k, v, options, seed=7):
    """The forward with a fresh generator of a fixed seed: every call draws the same dropout mask."""
    return attention_forward(q, k, v, **options, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_attention_gradients_match_finite_differences(case):
    q, k, v, options = case.build(seed=1)
    out, cache = forward_with_seed(q, k, v, options)
    dout = random_like(np.random.default_rng(2), out.shape)
    grads = attention_backward(dout, cache)
    expected = numerical_gradients(lambda q, k, v: forward_with_seed(q, k, v, options)[0], [q, k, v], dout)
    for name, grad, reference, x in zip("qkv", grads, expected, (q, k, v)):
        assert grad.shape == x.shape, name
        assert rel_error(grad, reference) < 1e-7, name


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_attention_matches_torch(case):
    torch = require_torch()
    q, k, v, options = case.build(seed=3)
    out, cache = forward_with_seed(q, k, v, options)
    dout = random_like(np.random.default_rng(4), out.shape)
    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    # torch's SDPA (with enable_gqa); with dropout, the same composition applying our keep-mask.
    out_t = torch_ops.attention(*tensors, options.get("attn_mask"), options["is_causal"], options["scale"],
                                cache.dropout_mask, options["dropout_p"])
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-10
    for name, grad, tensor in zip("qkv", attention_backward(dout, cache), tensors):
        assert rel_error(grad, tensor.grad.numpy()) < 1e-10, name


def test_fully_masked_rows_give_zero_output_and_zero_gradient(rng):
    q, k, v = random_like(rng, (2, 3, 4)), random_like(rng, (2, 5, 4)), random_like(rng, (2, 5, 3))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    out, cache = attention_forward(q, k, v, attn_mask=mask)
    assert np.all(out[:, 1] == 0) and np.all(np.isfinite(out))
    assert np.all(cache.weights[:, 1] == 0)
    dout = random_like(rng, out.shape)
    dq, dk, dv = attention_backward(dout, cache)
    assert np.all(dq[:, 1] == 0)
    assert all(np.all(np.isfinite(g)) for g in (dq, dk, dv))


def test_causal_gives_no_gradient_to_future_keys(rng):
    q, k, v = (random_like(rng, (1, 4, 3)) for _ in range(3))
    out, cache = attention_forward(q, k, v, is_causal=True)
    dout = np.zeros_like(out)
    dout[0, 1] = random_like(rng, (3,))  # only query 1 receives gradient
    dq, dk, dv = attention_backward(dout, cache)
    assert np.all(dk[0, 2:] == 0) and np.all(dv[0, 2:] == 0)
    assert np.any(dk[0, :2] != 0) and np.any(dv[0, :2] != 0)


def test_dropout_mask_is_reproducible_and_scaled(rng):
    q, k, v = (random_like(rng, (2, 6, 4)) for _ in range(3))
    out_a, cache_a = attention_forward(q, k, v, dropout_p=0.5, rng=np.random.default_rng(0))
    out_b, cache_b = attention_forward(q, k, v, dropout_p=0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out_a, out_b)
    keep = cache_a.dropout_mask
    assert keep.dtype == np.bool_ and keep.shape == cache_a.weights.shape
    assert 0 < keep.mean() < 1
    np.testing.assert_allclose(out_a, (cache_a.weights * keep / 0.5) @ v, rtol=1e-13)
    out_c, _ = attention_forward(q, k, v, dropout_p=0.5, rng=np.random.default_rng(1))
    assert not np.array_equal(out_a, out_c)


def test_seed_example_values():
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    out, cache = attention_forward(x, x, x)
    assert out.dtype == np.float64
    expected_weights_row0 = np.exp([1.0, 0.0, 0.5]) / np.exp([1.0, 0.0, 0.5]).sum()
    np.testing.assert_allclose(cache.weights[0], expected_weights_row0, rtol=1e-14)
    np.testing.assert_allclose(out, cache.weights @ x, rtol=1e-14)
    np.testing.assert_allclose(scaled_dot_product_attention(x, x, x), out, rtol=1e-14)  # the kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(rng, dtype):
    q, k, v = (random_like(rng, (2, 2, 3, 4), dtype) for _ in range(3))
    mask = random_like(rng, (3, 3))  # a float64 mask does not upcast float32 inputs
    out, cache = attention_forward(q, k, v, attn_mask=mask, dropout_p=0.2, rng=rng)
    grads = attention_backward(random_like(rng, out.shape, dtype), cache)
    assert out.dtype == dtype and cache.weights.dtype == dtype
    assert all(g.dtype == dtype for g in grads)


def test_inputs_and_dout_are_not_modified(rng):
    q, k, v = (random_like(rng, (2, 2, 3, 4)) for _ in range(3))
    mask = random_like(rng, (3, 3))
    arrays = [q, k, v, mask]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False
    out, cache = attention_forward(q, k, v, attn_mask=mask, dropout_p=0.1, rng=rng)
    dout = random_like(rng, out.shape)
    dout.flags.writeable = False
    attention_backward(dout, cache)
    attention_backward(dout, cache)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)




@pytest.mark.parametrize("message, error, make", BAD_CALLS, ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_CALLS)])
def test_bad_input_is_rejected_with_a_clear_message(message, error, make):
    def zeros(*shape):
        return np.zeros(shape)

    args, kwargs = make(zeros)
    with pytest.raises(error, match=message):
        attention_forward(*args, **kwargs)


def test_dout_of_wrong_shape_or_dtype_is_rejected(rng):
    out, cache = attention_forward(*(random_like(rng, (2, 3, 4)) for _ in range(3)))
    with pytest.raises(ValueError, match=r"dout.*\(2, 3, 4\).*\(2, 4, 3\)"):
        attention_backward(np.zeros((2, 4, 3)), cache)
    with pytest.raises(TypeError, match="dout.*float64.*float32"):
        attention_backward(np.zeros((2, 3, 4), np.float32), cache)


def test_integer_inputs_are_converted_to_float64(rng):
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    out, cache = attention_forward(x, x, x)
    dq, dk, dv = attention_backward(random_like(rng, out.shape), cache)
    assert out.dtype == dq.dtype == dk.dtype == dv.dtype == np.float64
    np.testing.assert_array_equal(out, attention_forward(*(x.astype(np.float64),) * 3)[0])


@pytest.mark.parametrize("options", [{}, {"is_causal": True, "scale": 0.3}, {"softcap": 2.0, "window": (1, 0)}])
def test_the_textbook_convenience_function_is_the_forward_output(rng, options):
    from numpy_attention import functional

    q, k, v = random_like(rng, (2, 4, 5, 3)), random_like(rng, (2, 2, 6, 3)), random_like(rng, (2, 2, 6, 2))
    expected, _ = functional.attention_forward(q, k, v, **options)
    np.testing.assert_array_equal(functional.scaled_dot_product_attention(q, k, v, **options), expected)


@pytest.mark.parametrize("options", [{}, {"is_causal": True, "scale": 0.3},
                                     {"softcap": 2.0, "window": (1, 0), "query_offset": 1, "sinks": np.ones(4)}])
def test_the_kernel_convenience_function_is_the_dense_kernels_forward_output(rng, options):
    from numpy_attention import kernels

    q, k, v = random_like(rng, (2, 4, 5, 3)), random_like(rng, (2, 2, 6, 3)), random_like(rng, (2, 2, 6, 2))
    expected, _ = kernels.attention_forward(q, k, v, **options)
    np.testing.assert_array_equal(scaled_dot_product_attention(q, k, v, **options), expected)

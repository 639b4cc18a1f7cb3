"""RMSNorm: the pair against finite differences and torch's rms_norm, the module against torch.nn.RMSNorm."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
import numpy_attention as na
from numpy_attention.functional import rms_norm_backward, rms_norm_forward


def with_weight(rng, x_shape, weighted):
    x = random_like(rng, x_shape)
    return x, (1 + 0.5 * random_like(rng, x_shape[-1:])) if weighted else None


@pytest.mark.parametrize("weighted", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("x_shape, eps", [((5,), 1e-6), ((3, 4), 1e-6), ((2, 3, 6), 0.5), ((4, 1), 1e-6)])
def test_rms_norm_gradients_match_finite_differences(rng, x_shape, eps, weighted):
    x, weight = with_weight(rng, x_shape, weighted)
    inputs = (x, weight) if weighted else (x,)
    report = gradcheck.check(lambda *a: rms_norm_forward(*a, eps=eps), rms_norm_backward, inputs)
    assert report.passed, str(report)


def test_rms_norm_gradients_for_large_and_tiny_rows(rng):
    x = random_like(rng, (3, 5)) * np.array([[1e3], [1.0], [1e-3]])  # eps matters in the last row only
    weight = random_like(rng, (5,))
    report = gradcheck.check(lambda x, w: rms_norm_forward(x, w, eps=1e-6), rms_norm_backward, (x, weight))
    assert report.passed, str(report)


@pytest.mark.parametrize("weighted", [True, False], ids=["weight", "no-weight"])
@pytest.mark.parametrize("eps", [1e-6, 1e-5, 0.0, 0.3])
def test_rms_norm_matches_torch(rng, weighted, eps):
    torch = require_torch()
    x, weight = with_weight(rng, (2, 3, 7), weighted)
    x = x * np.array([[[30.0]], [[0.01]]])  # large rows and small ones
    dout = random_like(rng, x.shape)
    out, cache = rms_norm_forward(x, weight, eps)
    dx, dweight = rms_norm_backward(dout, cache)
    x_t = torch.tensor(x, requires_grad=True)
    w_t = None if weight is None else torch.tensor(weight, requires_grad=True)
    out_t = torch.nn.functional.rms_norm(x_t, (7,), w_t, eps)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-12
    assert rel_error(dx, x_t.grad.numpy()) < 1e-10
    if weighted:
        assert rel_error(dweight, w_t.grad.numpy()) < 1e-12
    else:
        assert dweight is None


def test_rms_norm_is_the_published_formula(rng):
    x, weight = with_weight(rng, (4, 6), True)
    out, _ = rms_norm_forward(x, weight, eps=0.1)
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 0.1) * weight
    assert rel_error(out, expected) < 1e-15
    unit, _ = rms_norm_forward(x, eps=0.0)
    assert rel_error(np.sqrt((unit**2).mean(-1)), np.ones(4)) < 1e-15


def test_rms_norm_keeps_float32_spreads_nan_and_leaves_inputs_alone(rng):
    x, weight = (a.astype(np.float32) for a in with_weight(rng, (3, 4), True))
    x_copy = x.copy()
    out, cache = rms_norm_forward(x, weight)
    dout = random_like(rng, out.shape, np.float32)
    dx, dweight = rms_norm_backward(dout, cache)
    assert out.dtype == dx.dtype == dweight.dtype == np.float32
    np.testing.assert_array_equal(x, x_copy)
    for array in (out, dx, dweight):
        assert not any(np.shares_memory(array, other) for other in (x, weight, dout, *cache))
    out, _ = rms_norm_forward(np.zeros((2, 3)), eps=0.0)  # 0 / sqrt(0): NaN, as torch gives
    assert np.isnan(out).all()
    x[1, 2] = np.nan
    out, _ = rms_norm_forward(x, weight)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    out, _ = rms_norm_forward(np.arange(6).reshape(2, 3))
    assert out.dtype == np.float64


def test_rms_norm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\).*\(3,\)"):
        rms_norm_forward(np.zeros((2, 4)), np.ones(3))
    with pytest.raises(TypeError, match="x, weight must share one dtype"):
        rms_norm_forward(np.zeros((2, 4)), np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"eps must be a non-negative.*-0.1"):
        rms_norm_forward(np.zeros((2, 4)), eps=-0.1)
    with pytest.raises(TypeError, match="eps must be a real number"):
        rms_norm_forward(np.zeros((2, 4)), eps="1e-6")
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., D\).*\(\)"):
        rms_norm_forward(np.float64(1.0))
    with pytest.raises(TypeError, match="x must"):
        rms_norm_forward(np.zeros((2, 4), bool))
    _, cache = rms_norm_forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 4\)"):
        rms_norm_backward(np.ones((4, 2)), cache)
    with pytest.raises(TypeError, match="cache must be the RMSNormCache"):
        rms_norm_backward(np.ones((2, 4)), None)


# --- the module ---------------------------------------------------------------------------------

@pytest.mark.parametrize("normalized_shape, affine", [(6, True), ((6,), False), ((2, 3), True)])
def test_rms_norm_module_passes_the_module_check_and_matches_torch(rng, normalized_shape, affine):
    torch = require_torch()
    module = na.RMSNorm(normalized_shape, eps=1e-5, elementwise_affine=affine)
    if affine:
        module.params["weight"][...] = 1 + random_like(rng, module.params["weight"].shape)
        assert set(module.grads) == {"weight"}
    else:
        assert module.params == {}
    x = random_like(rng, (4, 2, 6) if normalized_shape != (2, 3) else (4, 2, 3))
    report = gradcheck.check_module(module, x)
    assert report.passed, str(report)

    reference = torch.nn.RMSNorm(normalized_shape, eps=1e-5, elementwise_affine=affine, dtype=torch.float64)
    if affine:
        reference.weight.data = torch.tensor(module.params["weight"])
    dout = random_like(rng, x.shape)
    x_t = torch.tensor(x, requires_grad=True)
    reference(x_t).backward(torch.tensor(dout))
    module.zero_grad()
    out = module(x)
    dx = module.backward(dout)
    assert rel_error(out, reference(x_t).detach().numpy()) < 1e-12
    assert rel_error(dx, x_t.grad.numpy()) < 1e-10
    if affine:
        assert rel_error(module.grads["weight"], reference.weight.grad.numpy()) < 1e-12


def test_rms_norm_module_accumulates_keeps_its_dtype_and_round_trips(tmp_path, rng):
    module = na.RMSNorm(4, dtype=np.float32)
    np.testing.assert_array_equal(module.params["weight"], np.ones(4, np.float32))
    x, dout = random_like(rng, (3, 4), np.float32), random_like(rng, (3, 4), np.float32)
    module(x)
    module.backward(dout)
    once = module.grads["weight"].copy()
    module(x)
    module.backward(dout)
    assert rel_error(module.grads["weight"], 2 * once) < 1e-6 and once.dtype == np.float32
    module.params["weight"][...] = random_like(rng, (4,), np.float32)
    module.save(tmp_path / "norm.npz")
    other = na.RMSNorm(4, dtype=np.float32)
    other.load(tmp_path / "norm.npz")
    np.testing.assert_array_equal(other.params["weight"], module.params["weight"])


def test_rms_norm_module_rejects_bad_input():
    for bad, error in (((), TypeError), (0, ValueError), ((4, -1), ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="normalized_shape"):
            na.RMSNorm(bad)
    with pytest.raises(ValueError, match="eps must be a non-negative"):
        na.RMSNorm(4, eps=-1.0)
    with pytest.raises(TypeError, match="elementwise_affine must be a bool"):
        na.RMSNorm(4, elementwise_affine=None)
    module = na.RMSNorm((2, 3))
    with pytest.raises(ValueError, match=r"backward\(\) was called before forward"):
        module.backward(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match=r"x must end in the normalized_shape \(2, 3\); got shape \(4, 3, 2\)"):
        module(np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match=r"x must end in the normalized_shape \(2, 3\); got shape \(3,\)"):
        module(np.zeros(3))
    with pytest.raises(TypeError, match="x must have dtype float64"):
        module(np.zeros((2, 3), np.float32))
    module(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(4, 2, 3\)"):
        module.backward(np.zeros((4, 6)))

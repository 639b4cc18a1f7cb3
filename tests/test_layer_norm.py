"""layer_norm_forward/backward and LayerNorm: torch, finite differences, shapes, dtypes, bad input."""

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
import numpy_attention as na
from numpy_attention import functional as F

SHAPES = [(7,), (3, 5), (2, 4, 6)]
AFFINE = [(True, True), (True, False), (False, False)]


def _inputs(rng, shape, weight, bias, scale=1.0, dtype=np.float64):
    x = (scale * random_like(rng, shape) + 3.0).astype(dtype)  # a non-zero mean to remove
    w = (1.0 + 0.5 * random_like(rng, shape[-1:])).astype(dtype) if weight else None
    b = random_like(rng, shape[-1:], dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight,bias", AFFINE)
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_layer_norm_matches_torch(rng, shape, weight, bias, scale):
    torch = require_torch()
    x, w, b = _inputs(rng, shape, weight, bias, scale)
    out, cache = F.layer_norm_forward(x, w, b)
    dout = random_like(rng, out.shape)
    dx, dw, db = F.layer_norm_backward(dout, cache)
    tensors = [torch.tensor(a, requires_grad=True) if a is not None else None for a in (x, w, b)]
    ref = torch.nn.functional.layer_norm(tensors[0], shape[-1:], tensors[1], tensors[2], 1e-5)
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) < 1e-10
    for ours, tensor in zip((dx, dw, db), tensors):
        if tensor is None:
            assert ours is None
        else:
            assert rel_error(ours, tensor.grad.numpy()) < 1e-10


@pytest.mark.parametrize("weight,bias", AFFINE)
def test_layer_norm_finite_differences(rng, weight, bias):
    x, w, b = _inputs(rng, (3, 5), weight, bias)
    inputs = tuple(a for a in (x, w, b) if a is not None)
    if weight and not bias:
        report = gradcheck.check(lambda x, w: F.layer_norm_forward(x, w), lambda d, c: F.layer_norm_backward(d, c)[:2],
                                 inputs)
    elif not weight:
        report = gradcheck.check(lambda x: F.layer_norm_forward(x, eps=0.1),
                                 lambda d, c: F.layer_norm_backward(d, c)[0], inputs)
    else:
        report = gradcheck.check(F.layer_norm_forward, F.layer_norm_backward, inputs)
    assert report.passed, report


def test_layer_norm_rows_have_zero_mean_unit_variance_and_float32_stays(rng):
    x, _, _ = _inputs(rng, (4, 9), False, False, 10.0, np.float32)
    out, cache = F.layer_norm_forward(x, eps=0.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-5)
    dx, _, _ = F.layer_norm_backward(random_like(rng, out.shape, np.float32), cache)
    assert dx.dtype == np.float32
    assert not np.shares_memory(out, cache.x_hat)


def test_layer_norm_rejects_bad_input(rng):
    x = random_like(rng, (2, 3))
    with pytest.raises(ValueError, match="weight must have shape"):
        F.layer_norm_forward(x, np.ones(4))
    with pytest.raises(TypeError, match="share one dtype"):
        F.layer_norm_forward(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="eps"):
        F.layer_norm_forward(x, eps=-1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.layer_norm_forward(x > 0)
    _, cache = F.layer_norm_forward(x)
    with pytest.raises(ValueError, match="dout must have"):
        F.layer_norm_backward(np.ones((2, 4)), cache)


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_matches_torch_and_accumulates(rng, bias):
    torch = require_torch()
    module = na.LayerNorm(6, bias=bias)
    assert set(module.params) == ({"weight", "bias"} if bias else {"weight"})
    for value in module.params.values():
        value[...] = random_like(rng, value.shape)
    x = random_like(rng, (2, 3, 6))
    dout = random_like(rng, x.shape)
    out = module(x)
    dx = module.backward(dout)
    module(x)
    module.backward(dout)
    twin = torch.nn.LayerNorm(6, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for name, value in module.params.items():
            getattr(twin, name).copy_(torch.tensor(value))
    xt = torch.tensor(x, requires_grad=True)
    ref = twin(xt)
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) < 1e-10
    assert rel_error(dx, xt.grad.numpy()) < 1e-10
    for name in module.params:
        assert rel_error(module.grads[name], 2 * getattr(twin, name).grad.numpy()) < 1e-10


def test_layer_norm_module_check_and_options(rng):
    module = na.LayerNorm((5,), eps=1e-3)
    for value in module.params.values():
        value[...] = random_like(rng, value.shape)
    assert gradcheck.check_module(module, random_like(rng, (3, 5))).passed
    assert na.LayerNorm(4, elementwise_affine=False).params == {}
    assert na.LayerNorm(4, dtype=np.float32).params["weight"].dtype == np.float32
    with pytest.raises(ValueError, match="normalized_shape"):
        na.LayerNorm((2, 3))
    with pytest.raises(TypeError, match="normalized_shape"):
        na.LayerNorm(2.5)
    with pytest.raises(ValueError, match="backward\\(\\) was called before forward"):
        na.LayerNorm(3).backward(np.ones(3))

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients
from numpy_attention.functional import linear_backward, linear_forward


@pytest.mark.parametrize("x_shape", [(4,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gradients_match_finite_differences(rng, x_shape, with_bias):
    x, weight = random_like(rng, x_shape), random_like(rng, (5, 4))
    bias = random_like(rng, (5,)) if with_bias else None
    out, cache = linear_forward(x, weight, bias)
    dout = random_like(rng, out.shape)
    dx, dweight, dbias = linear_backward(dout, cache)
    inputs = [x, weight] + ([bias] if with_bias else [])
    expected = numerical_gradients(lambda *a: linear_forward(*a)[0], inputs, dout)
    assert rel_error(dx, expected[0]) < 1e-7
    assert rel_error(dweight, expected[1]) < 1e-7
    if with_bias:
        assert rel_error(dbias, expected[2]) < 1e-7
    else:
        assert dbias is None


def test_linear_matches_torch(rng):
    torch = require_torch()
    x, weight, bias = random_like(rng, (2, 3, 4)), random_like(rng, (5, 4)), random_like(rng, (5,))
    dout = random_like(rng, (2, 3, 5))
    out, cache = linear_forward(x, weight, bias)
    tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    out_t = torch.nn.functional.linear(*tensors)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-12
    for ours, theirs in zip(linear_backward(dout, cache), tensors):
        assert rel_error(ours, theirs.grad.numpy()) < 1e-12


def test_linear_keeps_float32(rng):
    x, weight = random_like(rng, (3, 4), np.float32), random_like(rng, (5, 4), np.float32)
    out, cache = linear_forward(x, weight, np.zeros(5, np.float32))
    grads = linear_backward(random_like(rng, out.shape, np.float32), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


def test_linear_rejects_bad_input():
    with pytest.raises(ValueError, match=r"in_features = 4.*\(3, 5\)"):
        linear_forward(np.zeros((3, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="bias"):
        linear_forward(np.zeros((3, 4)), np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(TypeError, match="weight"):
        linear_forward(np.zeros((3, 4)), np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="x"):
        linear_forward(np.zeros((3, 4), complex), np.zeros((2, 4)))

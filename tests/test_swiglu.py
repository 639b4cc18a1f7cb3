"""swiglu_forward/backward: torch, finite differences, large inputs, dtypes, bad input."""

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
from numpy_attention import functional as F


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_swiglu_matches_torch(rng, scale):
    torch = require_torch()
    gate, up = scale * random_like(rng, (3, 4, 5)), random_like(rng, (3, 4, 5))
    out, cache = F.swiglu_forward(gate, up)
    dout = random_like(rng, out.shape)
    dgate, dup = F.swiglu_backward(dout, cache)
    g, u = torch.tensor(gate, requires_grad=True), torch.tensor(up, requires_grad=True)
    ref = torch.nn.functional.silu(g) * u
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) < 1e-10
    assert rel_error(dgate, g.grad.numpy()) < 1e-10
    assert rel_error(dup, u.grad.numpy()) < 1e-10


def test_swiglu_finite_differences(rng):
    gate, up = 3 * random_like(rng, (4, 6)), random_like(rng, (4, 6))
    report = gradcheck.check(F.swiglu_forward, F.swiglu_backward, (gate, up))
    assert report.passed, report


def test_swiglu_far_tails_do_not_overflow_and_float32_stays(rng):
    with np.errstate(all="raise"):
        out, cache = F.swiglu_forward(np.array([-800.0, 800.0, 0.0]), np.ones(3))
        F.swiglu_backward(np.ones(3), cache)
    np.testing.assert_array_equal(out, [0.0, 800.0, 0.0])
    out, cache = F.swiglu_forward(random_like(rng, (2, 3), np.float32), random_like(rng, (2, 3), np.float32))
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in F.swiglu_backward(out, cache))


def test_swiglu_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        F.swiglu_forward(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="share one dtype"):
        F.swiglu_forward(np.ones(3), np.ones(3, np.float32))
    _, cache = F.swiglu_forward(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="dout must have"):
        F.swiglu_backward(np.ones(2), cache)

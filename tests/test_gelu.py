"""erf/erfc against math.erf, gelu_forward/backward (both forms) and GELU against torch and finite differences."""

import math

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
import numpy_attention as na
from numpy_attention import functional as F
from numpy_attention import kernels


def _ulps(actual, expected):
    """Error in units in the last place of the expected value (the actual's dtype)."""
    expected = expected.astype(actual.dtype)
    spacing = np.spacing(np.abs(expected))
    spacing = np.where(expected == 0, np.finfo(actual.dtype).smallest_subnormal, spacing)
    return np.abs(actual.astype(np.float64) - expected.astype(np.float64)) / spacing


def _points(rng):
    """Every interval of Cody's approximation, its edges, the far tails and tiny arguments."""
    edges = np.array([0.46875, 4.0, 26.5, 27.3])
    near_edges = (edges[:, None] * (1 + np.array([-1e-15, 0, 1e-15]))).ravel()
    pieces = [np.linspace(-30, 30, 60001), rng.uniform(-6, 6, 5000), near_edges,
              np.geomspace(1e-300, 1.0, 500), np.array([0.0, 5e-324])]
    x = np.concatenate(pieces)
    return np.concatenate([x, -x])


def test_erf_is_within_a_few_ulps_of_math_erf_in_float64(rng):
    x = _points(rng)
    assert _ulps(F.erf(x), np.array([math.erf(t) for t in x])).max() <= 4


def test_erfc_keeps_relative_accuracy_in_the_tail(rng):
    x = _points(rng)
    expected = np.array([math.erfc(t) for t in x])
    normal = expected > np.finfo(np.float64).tiny  # subnormal results carry fewer significant bits
    assert _ulps(F.erfc(x)[normal], expected[normal]).max() <= 8
    assert F.erfc(np.array([10.0]))[0] == pytest.approx(math.erfc(10.0), rel=1e-14)  # not 1 - erf(10) = 0
    np.testing.assert_array_equal(F.erfc(np.array([27.3, 40.0, np.inf, -np.inf])), [0.0, 0.0, 0.0, 2.0])


def test_erf_float32_stays_float32_and_is_accurate(rng):
    x = _points(rng).astype(np.float32)
    exact = np.array([math.erf(float(t)) for t in x])
    out = F.erf(x)
    assert out.dtype == np.float32
    assert _ulps(out, exact).max() <= 4
    exact_c = np.array([math.erfc(float(t)) for t in x])
    normal = exact_c > np.finfo(np.float32).tiny
    assert np.max(np.abs(F.erfc(x)[normal] - exact_c[normal]) / exact_c[normal]) < 1e-6
    assert _ulps(F.erfc(x)[normal], exact_c[normal]).max() <= 8  # float32's one formula (erf.py's docstring)


def test_erf_special_values():
    out = F.erf(np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    np.testing.assert_array_equal(out[:2], [1.0, -1.0])
    assert np.isnan(out[2]) and np.isnan(F.erfc(np.array([np.nan]))[0])
    assert np.signbit(out[4]) and not np.signbit(out[3])
    assert F.erf(np.array([1, 2])).dtype == np.float64  # integers become float64
    assert F.erf(np.array(0.5)).shape == () and F.erfc(np.zeros((0, 3))).shape == (0, 3)
    grid = np.linspace(-5, 5, 3 * 70000).reshape(3, 70000)[:, ::-2]  # spans several chunks, not contiguous
    np.testing.assert_array_equal(F.erf(grid), F.erf(grid.copy()))
    np.testing.assert_allclose(F.erfc(grid)[:, :5], [[math.erfc(t) for t in row[:5]] for row in grid], rtol=1e-15)


def _reference_gelu(x, approximate):
    """Exact references, one element at a time from math: the erfc form has no cancellation."""
    if approximate == "tanh":
        return np.array([0.5 * t * (1 + math.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3))) for t in x])
    return np.array([t * 0.5 * math.erfc(-t / math.sqrt(2)) for t in x])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_gelu_matches_torch(rng, approximate, scale):
    torch = require_torch()
    x = scale * random_like(rng, (3, 4, 5))
    out, cache = F.gelu_forward(x, approximate)
    dout = random_like(rng, x.shape)
    dx = F.gelu_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.gelu(xt, approximate=approximate)
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) < 1e-10
    assert rel_error(dx, xt.grad.numpy()) < 1e-10


def test_gelu_tanh_form_is_torchs_formula_elementwise():
    # torch's own arrangement, 1 + tanh(u), cancels for very negative x; where it does not, it is exact.
    x = np.linspace(-3, 37, 4001)
    out, _ = F.gelu_forward(x, "tanh")
    expected = _reference_gelu(x, "tanh")
    nonzero = expected != 0
    assert np.max(np.abs(out[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])) < 1e-12


@pytest.mark.parametrize("approximate", ["none"])
def test_gelu_elementwise_accuracy_including_the_negative_tail(approximate):
    # Relative accuracy at every element, also where gelu(x) ~ 1e-300 (x ~ -37): torch's
    # (1 + erf(x / sqrt 2)) / 2 loses every digit there; erfc(-x / sqrt 2) / 2 does not. The bound
    # is the function's own condition: rounding x / sqrt(2) by one unit moves erfc by ~x^2 units.
    x = np.concatenate([np.linspace(-37, 37, 7401), [-1e-8, 1e-8]])
    out, _ = F.gelu_forward(x, approximate)
    expected = _reference_gelu(x, approximate)
    nonzero = expected != 0
    relative = np.abs(out[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])
    assert np.all(relative <= 4 * np.finfo(np.float64).eps * (1 + x[nonzero] ** 2))


def test_float32_gelu_and_phi_within_their_condition_of_the_exact_values(rng):
    # float32's Phi takes one exponential of the unsplit -x^2/2 (erf.py's docstring): in the tail
    # its error grows as x^2 ulps, the condition that rounding x / sqrt 2 gives the erfc form too.
    # In the bulk (|x| < 3) it stays within a few ulps.
    x = np.concatenate([np.linspace(-14.5, 14.5, 100001), rng.standard_normal(50000), 4 * rng.standard_normal(50000),
                        [-1e-30, 1e-30, -np.finfo(np.float32).tiny]]).astype(np.float32)
    x64 = x.astype(np.float64)
    exact_cdf = np.array([0.5 * math.erfc(-t / math.sqrt(2)) for t in x64])
    eps = np.finfo(np.float32).eps
    for actual, exact in ((F.normal_cdf(x), exact_cdf), (F.gelu_forward(x)[0], x64 * exact_cdf)):
        assert actual.dtype == np.float32
        normal = np.abs(exact) >= np.finfo(np.float32).tiny
        relative = np.abs(actual[normal] - exact[normal]) / np.abs(exact[normal])
        assert np.all(relative <= 8 * eps * (1 + x64[normal] ** 2))
        assert relative[np.abs(x64[normal]) < 3].max() <= 8 * eps
    np.testing.assert_array_equal(F.normal_cdf(np.array([np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, -15.0], np.float32)),
                                  [1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 0.0])
    assert np.isnan(F.normal_cdf(np.array([np.nan], np.float32))[0])


def test_normal_cdf_in_float64_within_its_condition_of_math_erfc(rng):
    x = np.concatenate([6 * rng.standard_normal(2000), np.linspace(-37, 37, 741)])
    exact = np.array([0.5 * math.erfc(-t / math.sqrt(2)) for t in x])
    relative = np.abs(F.normal_cdf(x) - exact) / exact
    assert np.all(relative <= 4 * np.finfo(np.float64).eps * (1 + x**2))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_gelu_finite_differences(rng, approximate, scale):
    x = scale * random_like(rng, (4, 6))
    report = gradcheck.check(lambda x: F.gelu_forward(x, approximate), F.gelu_backward, (x,))
    assert report.passed, report


def test_gelu_float32_dtype_and_special_values(rng):
    x = random_like(rng, (5,), np.float32)
    for approximate in ("none", "tanh"):
        out, cache = F.gelu_forward(x, approximate)
        assert out.dtype == np.float32
        assert F.gelu_backward(np.ones_like(x), cache).dtype == np.float32
        big, cache = F.gelu_forward(np.array([1e30, -1e30, np.nan]), approximate)
        assert big[0] == 1e30 and big[1] == 0 and np.isnan(big[2])


@pytest.mark.parametrize("pair", ["functional", "kernels"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_infinities_and_nan_spread_as_in_torch_without_warnings(pair, approximate):
    torch = require_torch()
    module = F if pair == "functional" else kernels
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3.0])
    dout = np.array([1.5, -2.0, 0.5, 3.0, -1.0, 2.0, -0.5, 0.25])
    out, cache = module.gelu_forward(x, approximate)  # RuntimeWarnings are errors in the tests
    dx = module.gelu_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.gelu(xt, approximate=approximate)
    expected.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, expected.detach().numpy())  # NaN where torch's is NaN, signed zeros too
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-15, atol=0)
    assert np.array_equal(np.signbit(out), np.signbit(expected.detach().numpy()))


def test_gelu_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="approximate"):
        F.gelu_forward(np.ones(3), "sigmoid")
    with pytest.raises(TypeError, match="float32 or float64"):
        F.gelu_forward(np.ones(3, dtype=complex))
    _, cache = F.gelu_forward(np.ones(3))
    with pytest.raises(ValueError, match="dout must have"):
        F.gelu_backward(np.ones(4), cache)
    with pytest.raises(TypeError, match="GeluCache"):
        F.gelu_backward(np.ones(3), None)
    with pytest.raises(ValueError, match="approximate"):
        na.GELU("erf")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_module(rng, approximate):
    torch = require_torch()
    module = na.GELU(approximate)
    assert module.params == {}
    x = 3 * random_like(rng, (2, 7))
    assert gradcheck.check_module(module, x).passed
    ref = torch.nn.GELU(approximate)(torch.tensor(x)).numpy()
    assert rel_error(module(x), ref) < 1e-10

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients
from numpy_attention.functional import softmax_backward, softmax_forward
from numpy_attention.kernels.softmax import EXP_SAFE_BOUND, softmax_rows


@pytest.mark.parametrize("shape, axis", [((5,), -1), ((3, 4), -1), ((3, 4), 0), ((2, 3, 5), 1)])
def test_softmax_gradient_matches_finite_differences(rng, shape, axis):
    x = random_like(rng, shape) * 3
    y, cache = softmax_forward(x, axis=axis)
    dout = random_like(rng, y.shape)
    (dx,) = [softmax_backward(dout, cache)]
    (expected,) = numerical_gradients(lambda x: softmax_forward(x, axis)[0], [x], dout)
    assert rel_error(dx, expected) < 1e-7


def test_softmax_rows_sum_to_one_and_survive_huge_scores(rng):
    x = random_like(rng, (4, 6)) * 1e4
    y, _ = softmax_forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-12)
    y32, _ = softmax_forward(x.astype(np.float32))
    assert y32.dtype == np.float32 and np.all(np.isfinite(y32))


def test_softmax_of_all_minus_inf_row_is_zero_with_zero_gradient(rng):
    x = random_like(rng, (3, 4))
    x[1] = -np.inf
    y, cache = softmax_forward(x)
    assert np.all(y[1] == 0) and np.all(np.isfinite(y))
    dx = softmax_backward(random_like(rng, (3, 4)), cache)
    assert np.all(dx[1] == 0) and np.all(np.isfinite(dx))


def test_softmax_matches_torch(rng):
    torch = require_torch()
    x = random_like(rng, (3, 7))
    dout = random_like(rng, (3, 7))
    y, cache = softmax_forward(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.softmax(xt, dim=-1)
    yt.backward(torch.tensor(dout))
    assert rel_error(y, yt.detach().numpy()) < 1e-12
    assert rel_error(softmax_backward(dout, cache), xt.grad.numpy()) < 1e-12


def test_softmax_rejects_bad_input():
    with pytest.raises(TypeError, match="x"):
        softmax_forward(np.array([True, False]))
    with pytest.raises(ValueError, match="axis"):
        softmax_forward(np.zeros((2, 3)), axis=2)
    _, cache = softmax_forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dout.*\(2, 3\)"):
        softmax_backward(np.zeros((3, 2)), cache)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_without_the_shift_equals_the_shifted_softmax_within_the_safe_bound(rng, dtype):
    bound = EXP_SAFE_BOUND[np.dtype(dtype)]
    x = rng.uniform(-bound, bound, (5, 3, 40)).astype(dtype)
    x[..., :2] = [-bound, bound]  # both ends of the range in every row
    x[0, 0, 5:] = -np.inf  # a masked tail
    x[1, 2] = -np.inf  # a fully masked row
    shifted, unshifted = softmax_rows(x.copy()), softmax_rows(x.copy(), shift=False)
    assert np.isfinite(unshifted).all() and (unshifted[1, 2] == 0).all() and (unshifted[0, 0, 5:] == 0).all()
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    assert rel_error(unshifted, shifted) < tolerance
    np.testing.assert_allclose(unshifted.sum(-1)[unshifted.sum(-1) > 0], 1.0, rtol=tolerance)


def test_softmax_rows_runs_in_place_and_keeps_nan_rows_nan(rng):
    x = random_like(rng, (3, 6))
    x[1, 2] = np.nan
    y = softmax_rows(x)
    assert y is x and np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert softmax_rows(np.empty((4, 0))).shape == (4, 0)

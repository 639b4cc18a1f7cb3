import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients
from numpy_attention.functional import cross_entropy_backward, cross_entropy_forward

# (logits shape, target shape): unbatched, batched, and torch's (N, C, d1, d2) layout.
SHAPES = [((5,), ()), ((4, 5), (4,)), ((2, 5, 3, 2), (2, 3, 2))]


def _target(rng, shape, ignore_index=-100, num_classes=5):
    """Random classes, exactly one of them ignored (when batched)."""
    target = rng.choice([c for c in range(num_classes) if c != ignore_index], size=shape)
    if target.ndim:
        target.flat[1] = ignore_index
    return target


def _loss_gradient(logits, target, dout, **options):
    return cross_entropy_backward(dout, cross_entropy_forward(logits, target, **options)[1])


@pytest.mark.parametrize("logits_shape, target_shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradient_matches_finite_differences(rng, logits_shape, target_shape, reduction):
    logits, target = random_like(rng, logits_shape), _target(rng, target_shape)
    loss, _ = cross_entropy_forward(logits, target, reduction=reduction)
    dout = random_like(rng, loss.shape)
    dlogits = _loss_gradient(logits, target, dout, reduction=reduction)
    (expected,) = numerical_gradients(
        lambda z: cross_entropy_forward(z, target, reduction=reduction)[0], [logits], dout
    )
    assert dlogits.shape == logits.shape
    assert rel_error(dlogits, expected) < 1e-7


@pytest.mark.parametrize("logits_shape, target_shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_matches_torch(rng, logits_shape, target_shape, reduction, ignore_index):
    torch = require_torch()
    logits, target = random_like(rng, logits_shape), _target(rng, target_shape, ignore_index)
    loss, cache = cross_entropy_forward(logits, target, ignore_index=ignore_index, reduction=reduction)
    dout = random_like(rng, loss.shape)
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(
        logits_t, torch.tensor(target), ignore_index=ignore_index, reduction=reduction
    )
    loss_t.backward(torch.tensor(dout))
    assert rel_error(loss, loss_t.detach().numpy()) < 1e-12
    assert rel_error(cross_entropy_backward(dout, cache), logits_t.grad.numpy()) < 1e-12


def test_cross_entropy_is_minus_log_softmax_of_the_target(rng):
    logits = random_like(rng, (3, 4))
    target = np.array([0, 3, 1])
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(3), target]
    loss, _ = cross_entropy_forward(logits, target)
    np.testing.assert_allclose(loss, expected.mean(), rtol=1e-14)
    losses, cache = cross_entropy_forward(logits, target, reduction="none")
    np.testing.assert_allclose(losses, expected, rtol=1e-14)
    # The gradient of the mean: (softmax - one_hot) / N.
    probs = np.exp(log_probs)
    probs[np.arange(3), target] -= 1
    np.testing.assert_allclose(_loss_gradient(logits, target, 1.0), probs / 3, rtol=1e-13)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 800.0]])
    loss, cache = cross_entropy_forward(logits, np.array([0, 1]), reduction="none")
    np.testing.assert_allclose(loss, [0.0, np.log(2)], atol=1e-12)
    np.testing.assert_allclose(cross_entropy_backward(np.ones(2), cache), [[0, 0, 0], [0, -0.5, 0.5]], atol=1e-12)


def test_cross_entropy_all_ignored_mean_is_nan_with_zero_gradient_as_in_torch():
    logits = np.arange(6.0).reshape(2, 3)
    loss, cache = cross_entropy_forward(logits, np.array([-100, -100]))
    assert np.isnan(loss)
    np.testing.assert_array_equal(cross_entropy_backward(1.0, cache), np.zeros((2, 3)))
    total, _ = cross_entropy_forward(logits, np.array([-100, -100]), reduction="sum")
    assert total == 0.0


def test_cross_entropy_keeps_float32(rng):
    logits = random_like(rng, (4, 5), np.float32)
    loss, cache = cross_entropy_forward(logits, np.array([0, 1, 2, 3]))
    dlogits = cross_entropy_backward(1.0, cache)  # a Python float takes the loss's dtype
    assert loss.dtype == np.float32 and dlogits.dtype == np.float32
    with pytest.raises(TypeError, match="dout must have dtype float32"):
        cross_entropy_backward(np.float64(1.0), cache)


def test_cross_entropy_rejects_bad_input():
    logits = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"target must hold indices in \[0, 5\) or ignore_index = -100; got 5"):
        cross_entropy_forward(logits, np.array([0, 1, 5, 2]))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\).*got \(3,\)"):
        cross_entropy_forward(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="target must have an integer dtype.*float64"):
        cross_entropy_forward(logits, np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        cross_entropy_forward(logits, np.array([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        cross_entropy_forward(logits, np.array([0, 1, 2, 3]), ignore_index=None)
    with pytest.raises(ValueError, match="logits must have a class dimension"):
        cross_entropy_forward(np.float64(1.0), np.array(0))
    _, cache = cross_entropy_forward(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(\)"):
        cross_entropy_backward(np.ones(4), cache)


def test_cross_entropy_does_not_mutate_read_only_inputs(rng):
    logits, target = random_like(rng, (4, 5)), np.array([0, 1, 2, 3])
    for array in (logits, target):
        array.flags.writeable = False
    loss, cache = cross_entropy_forward(logits, target, reduction="none")
    dout = random_like(rng, loss.shape)
    dout.flags.writeable = False
    cross_entropy_backward(dout, cache)
    cross_entropy_backward(dout, cache)  # the cache is unchanged: same answer twice


def test_cross_entropy_of_non_finite_logits_is_nan_as_in_torch_without_warning():
    logits = np.array([[np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf], [0.5, -1.0, 2.0]])
    losses, _ = cross_entropy_forward(logits, np.array([1, 0, 2]), reduction="none")  # RuntimeWarning = error
    assert np.isnan(losses[0]) and np.isnan(losses[1]) and np.isfinite(losses[2])
    torch = require_torch()
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor([1, 0, 2]), reduction="none")
    np.testing.assert_array_equal(np.isnan(losses), torch.isnan(expected).numpy())

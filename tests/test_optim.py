import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from numpy_attention import Adam, Embedding, Linear


def _model(dtype=np.float64):
    return [Linear(4, 3, dtype=dtype, rng=np.random.default_rng(0)), Embedding(5, 2, dtype=dtype, rng=1)]


def _set_random_grads(modules, rng):
    for module in modules:
        for grad in module.grads.values():
            grad[...] = random_like(rng, grad.shape, grad.dtype)


OPTIONS = [
    {},
    {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_adam_matches_torch_over_several_steps(rng, options):
    torch = require_torch()
    modules = _model()
    tensors = [torch.tensor(m.params[n].copy(), requires_grad=True) for m in modules for n in m.params]
    ours = Adam(modules, **options)
    theirs = torch.optim.Adam(tensors, **options)
    for _ in range(5):
        _set_random_grads(modules, rng)
        for tensor, grad in zip(tensors, (m.grads[n] for m in modules for n in m.grads)):
            tensor.grad = torch.tensor(grad.copy())
        ours.step()
        theirs.step()
    params = [m.params[n] for m in modules for n in m.params]
    for param, tensor in zip(params, tensors):
        assert rel_error(param, tensor.detach().numpy()) < 1e-10


def test_adam_first_step_moves_each_parameter_by_lr_against_its_gradient_sign(rng):
    # After one step m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps).
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    before = layer.state_dict()
    _set_random_grads([layer], rng)
    Adam(layer, lr=0.1, eps=0.0).step()
    for name in before:
        np.testing.assert_allclose(before[name] - layer.params[name], 0.1 * np.sign(layer.grads[name]), rtol=1e-12)


def test_adam_updates_in_place_keeps_dtype_and_zero_grad_clears(rng):
    modules = _model(np.float32)
    weight = modules[0].params["weight"]
    optimizer = Adam(modules, lr=0.01)
    _set_random_grads(modules, rng)
    optimizer.step()
    assert modules[0].params["weight"] is weight  # the module's own array, updated in place
    assert all(p.dtype == np.float32 for m in modules for p in m.params.values())
    optimizer.zero_grad()
    assert not any(g.any() for m in modules for g in m.grads.values())


def test_adam_minimises_a_quadratic():
    layer = Linear(3, 1, bias=False, rng=np.random.default_rng(0))
    target = np.array([[0.5, -1.0, 2.0]])
    optimizer = Adam(layer, lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        layer.grads["weight"] += 2 * (layer.params["weight"] - target)
        optimizer.step()
    np.testing.assert_allclose(layer.params["weight"], target, atol=1e-3)


def test_adam_rejects_bad_arguments():
    layer = Linear(2, 2)
    with pytest.raises(ValueError, match="lr must be >= 0; got -0.1"):
        Adam(layer, lr=-0.1)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\); got 1.0"):
        Adam(layer, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas must be a pair"):
        Adam(layer, betas=0.9)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        Adam(layer, eps=-1e-8)
    with pytest.raises(TypeError, match="amsgrad must be a bool"):
        Adam(layer, amsgrad="yes")
    with pytest.raises(TypeError, match="modules must be a Module or an iterable of Modules; got an item dict"):
        Adam([layer, layer.params])
    with pytest.raises(TypeError, match="modules must be a Module"):
        Adam(3)
    with pytest.raises(ValueError, match="at least one Module"):
        Adam([])

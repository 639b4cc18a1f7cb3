"""AdamW (decoupled weight decay, param groups) and clip_grad_norm against torch."""

import math

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import numpy_attention as na
from numpy_attention import AdamW, Embedding, LayerNorm, Linear, clip_grad_norm


def _model(dtype=np.float64):
    return [Linear(4, 3, dtype=dtype, rng=np.random.default_rng(0)), LayerNorm(3, dtype=dtype),
            Embedding(5, 2, dtype=dtype, rng=1)]


def _set_random_grads(modules, rng, scale=1.0):
    for module in modules:
        for grad in module.grads.values():
            grad[...] = scale * random_like(rng, grad.shape, grad.dtype)


def _torch_twins(torch, modules):
    return [[torch.tensor(m.params[n].copy(), requires_grad=True) for n in m.params] for m in modules]


def _copy_grads(torch, modules, tensors):
    for module, row in zip(modules, tensors):
        for tensor, name in zip(row, module.params):
            tensor.grad = torch.tensor(module.grads[name].copy())


@pytest.mark.parametrize("options", [{}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.3},
                                     {"lr": 0.01, "amsgrad": True}])
def test_adamw_matches_torch(rng, options):
    torch = require_torch()
    modules = _model()
    tensors = _torch_twins(torch, modules)
    ours = AdamW(modules, **options)
    theirs = torch.optim.AdamW([t for row in tensors for t in row], **options)
    for _ in range(5):
        _set_random_grads(modules, rng)
        _copy_grads(torch, modules, tensors)
        ours.step()
        theirs.step()
    for module, row in zip(modules, tensors):
        for name, tensor in zip(module.params, row):
            assert rel_error(module.params[name], tensor.detach().numpy()) < 1e-10


def test_adamw_param_groups_match_torch(rng):
    # nanoGPT's configure_optimizers: decay the >= 2-D parameters, not the others.
    torch = require_torch()
    modules = _model()
    tensors = _torch_twins(torch, modules)
    arrays = [p for m in modules for p in m.params.values()]
    groups = [{"params": [p for p in arrays if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in arrays if p.ndim < 2], "weight_decay": 0.0}]
    ours = AdamW(modules, lr=0.02, betas=(0.9, 0.95), param_groups=groups)
    flat = [(m, n, t) for m, row in zip(modules, tensors) for n, t in zip(m.params, row)]
    theirs = torch.optim.AdamW([{"params": [t for m, n, t in flat if m.params[n].ndim >= 2], "weight_decay": 0.1},
                                {"params": [t for m, n, t in flat if m.params[n].ndim < 2], "weight_decay": 0.0}],
                               lr=0.02, betas=(0.9, 0.95))
    for _ in range(5):
        _set_random_grads(modules, rng)
        _copy_grads(torch, modules, tensors)
        ours.step()
        theirs.step()
    for module, name, tensor in flat:
        assert rel_error(module.params[name], tensor.detach().numpy()) < 1e-10


def test_adamw_with_zero_gradient_only_decays(rng):
    layer = Linear(3, 2, rng=0)
    before = layer.state_dict()
    AdamW(layer, lr=0.1, weight_decay=0.5).step()  # m = v = 0: the Adam step is 0
    for name in before:
        np.testing.assert_allclose(layer.params[name], before[name] * (1 - 0.1 * 0.5), rtol=1e-15)


def test_adamw_groups_leave_unlisted_parameters_alone_and_reject_bad_groups(rng):
    layer = Linear(3, 2, rng=0)
    bias = layer.params["bias"].copy()
    _set_random_grads([layer], rng)
    AdamW(layer, param_groups=[{"params": ["weight"]}]).step()
    np.testing.assert_array_equal(layer.params["bias"], bias)
    with pytest.raises(ValueError, match="no parameter"):
        AdamW(layer, param_groups=[{"params": ["w"]}])
    with pytest.raises(ValueError, match="no parameter"):
        AdamW(layer, param_groups=[{"params": [layer.params["weight"].copy()]}])
    with pytest.raises(ValueError, match="earlier group"):
        AdamW(layer, param_groups=[{"params": ["weight"]}, {"params": ["weight"]}])
    with pytest.raises(ValueError, match="unsupported options"):
        AdamW(layer, param_groups=[{"params": ["weight"], "lr": 0.1}])
    with pytest.raises(TypeError, match="param_groups"):
        AdamW(layer, param_groups={"params": ["weight"]})
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW(layer, weight_decay=-0.1)


@pytest.mark.parametrize("max_norm,scale", [(1.0, 1.0), (100.0, 1.0), (0.5, 1e3)])
def test_clip_grad_norm_matches_torch(rng, max_norm, scale):
    torch = require_torch()
    modules = _model()
    _set_random_grads(modules, rng, scale)
    tensors = _torch_twins(torch, modules)
    _copy_grads(torch, modules, tensors)
    total = clip_grad_norm(modules, max_norm)
    expected = torch.nn.utils.clip_grad_norm_([t for row in tensors for t in row], max_norm)
    assert total == pytest.approx(float(expected), rel=1e-12)
    for module, row in zip(modules, tensors):
        for name, tensor in zip(module.params, row):
            assert rel_error(module.grads[name], tensor.grad.numpy()) < 1e-12
    after = math.sqrt(sum(float((g * g).sum()) for m in modules for g in m.grads.values()))
    assert after <= max_norm * (1 + 1e-12) or max_norm >= total


def test_clip_grad_norm_accepts_dicts_and_lists_and_rejects_bad_input(rng):
    grads = {"a": np.full(4, 3.0), "b": np.full(1, 4.0 * 2)}  # norm sqrt(36 + 64) = 10
    assert clip_grad_norm(grads, 5.0) == pytest.approx(10.0)
    np.testing.assert_allclose(grads["a"], 1.5 * 5 / (5 + 5e-7), rtol=1e-12)
    arrays = [np.array([3.0, 4.0], dtype=np.float32)]
    assert clip_grad_norm(arrays, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(arrays[0], [3.0, 4.0])  # below max_norm: untouched
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(arrays, -1.0)
    with pytest.raises(TypeError, match="grads"):
        clip_grad_norm(np.ones(3), 1.0)
    with pytest.raises(TypeError, match="grads"):
        clip_grad_norm([np.ones(3, dtype=int)], 1.0)
    nan = [np.array([np.nan, 1.0])]
    assert math.isnan(clip_grad_norm(nan, 1.0)) and np.isnan(nan[0]).all()


def test_adamw_is_exported():
    assert na.AdamW is AdamW and na.clip_grad_norm is clip_grad_norm
    assert AdamW(Linear(2, 2, rng=0)).weight_decay == 0.01  # torch's default

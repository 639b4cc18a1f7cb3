import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients
from numpy_attention import Linear, ScaledDotProductAttention
from numpy_attention.kernels import attention_forward


def test_linear_module_gradients_accumulate_and_zero(rng):
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    x = random_like(rng, (2, 5, 4))
    dout = random_like(rng, (2, 5, 3))
    out = layer(x)
    dx = layer.backward(dout)
    weight, bias = layer.params["weight"], layer.params["bias"]
    expected = numerical_gradients(lambda x, w, b: x @ w.T + b, [x, weight, bias], dout)
    assert rel_error(dx, expected[0]) < 1e-7
    assert rel_error(layer.grads["weight"], expected[1]) < 1e-7
    assert rel_error(layer.grads["bias"], expected[2]) < 1e-7
    np.testing.assert_allclose(out, x @ weight.T + bias)
    layer.backward(dout)
    np.testing.assert_allclose(layer.grads["weight"], 2 * expected[1], rtol=1e-6)
    layer.zero_grad()
    assert not layer.grads["weight"].any() and not layer.grads["bias"].any()


def test_linear_module_init_follows_torch_bounds():
    layer = Linear(16, 8, rng=np.random.default_rng(0))
    assert set(layer.params) == set(layer.grads) == {"weight", "bias"}
    assert layer.params["weight"].shape == (8, 16)
    assert np.abs(layer.params["weight"]).max() <= 0.25 and np.abs(layer.params["bias"]).max() <= 0.25
    assert "bias" not in Linear(4, 3, bias=False).params
    assert Linear(4, 3, dtype=np.float32).params["weight"].dtype == np.float32


def test_linear_module_matches_torch(rng):
    torch = require_torch()
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    reference = torch.nn.Linear(4, 3, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(layer.params["weight"]))
        reference.bias.copy_(torch.tensor(layer.params["bias"]))
    x, dout = random_like(rng, (2, 4)), random_like(rng, (2, 3))
    xt = torch.tensor(x, requires_grad=True)
    reference(xt).backward(torch.tensor(dout))
    assert rel_error(layer(x), reference(xt).detach().numpy()) < 1e-12
    assert rel_error(layer.backward(dout), xt.grad.numpy()) < 1e-12
    assert rel_error(layer.grads["weight"], reference.weight.grad.numpy()) < 1e-12


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(ValueError, match="before forward"):
        Linear(2, 2).backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="before forward"):
        ScaledDotProductAttention().backward(np.zeros((2, 2)))


def test_sdpa_module_dropout_only_in_training(rng):
    q, k, v = (random_like(rng, (2, 4, 3)) for _ in range(3))
    attention = ScaledDotProductAttention(dropout=0.5, rng=np.random.default_rng(0))
    out_train, weights = attention(q, k, v)
    reference, _ = attention_forward(q, k, v)
    assert not np.allclose(out_train, reference)
    attention.eval()
    out_eval, weights_eval = attention(q, k, v)
    np.testing.assert_array_equal(out_eval, reference)
    np.testing.assert_array_equal(weights, weights_eval)  # weights are before dropout


def test_sdpa_module_backward_uses_its_forward(rng):
    q, k, v = (random_like(rng, (2, 4, 3)) for _ in range(3))
    mask = np.tri(4, 4, dtype=bool)
    attention = ScaledDotProductAttention(dropout=0.3, scale=0.5, rng=np.random.default_rng(5))
    out, _ = attention(q, k, v, attn_mask=mask)
    dout = random_like(rng, out.shape)
    grads = attention.backward(dout)

    def forward(q, k, v):
        return attention_forward(q, k, v, mask, 0.3, scale=0.5, rng=np.random.default_rng(5))[0]

    for grad, expected in zip(grads, numerical_gradients(forward, [q, k, v], dout)):
        assert rel_error(grad, expected) < 1e-7


def test_state_dict_round_trip_and_save_load(tmp_path, rng):
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    other = Linear(4, 3, rng=np.random.default_rng(1))
    state = layer.state_dict()
    state["weight"][0, 0] = 99.0  # a copy: the layer is unchanged
    assert layer.params["weight"][0, 0] != 99.0
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other.params["weight"], layer.params["weight"])
    path = tmp_path / "linear.npz"
    layer.save(path)
    fresh = Linear(4, 3, rng=np.random.default_rng(2))
    fresh.load(path)
    for name in layer.params:
        np.testing.assert_array_equal(fresh.params[name], layer.params[name])


def test_load_state_dict_rejects_bad_state_and_leaves_params_unchanged(tmp_path):
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    before = layer.state_dict()
    good = layer.state_dict()
    bad_states = [
        ({"weight": good["weight"]}, ValueError, "missing"),
        ({**good, "extra": np.zeros(1)}, ValueError, "unexpected"),
        ({**good, "bias": np.zeros(4)}, ValueError, r"bias.*\(3,\).*\(4,\)"),
        ({**good, "bias": np.full(3, np.nan)}, ValueError, "bias.*NaN"),
        ({**good, "weight": good["weight"].astype(complex)}, TypeError, "weight.*dtype"),
        ("weights.npz", TypeError, "state_dict"),
    ]
    for state, error, message in bad_states:
        with pytest.raises(error, match=message):
            layer.load_state_dict(state)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="corrupt.npz"):
        layer.load(corrupt)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, weight=np.array([object()], dtype=object), bias=good["bias"])
    with pytest.raises(ValueError, match="pickled.npz"):
        layer.load(pickled)
    for name in before:
        np.testing.assert_array_equal(layer.params[name], before[name])


def test_module_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="dropout"):
        ScaledDotProductAttention(dropout=1.5)
    with pytest.raises(ValueError, match="impl"):
        ScaledDotProductAttention(impl="fast")
    with pytest.raises(TypeError, match="x must have dtype float32"):
        Linear(2, 3, dtype=np.float32)(np.zeros((1, 2)))

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients
from numpy_attention import Embedding
from numpy_attention.functional import embedding_backward, embedding_forward

# Repeated indices on purpose: a row looked up twice must receive both gradients.
INDICES = np.array([[1, 3, 1, 0], [4, 4, 4, 2]])


@pytest.mark.parametrize("padding_idx", [None, 4, -1, 1])
def test_embedding_gradient_matches_finite_differences(rng, padding_idx):
    weight = random_like(rng, (5, 3))
    out, cache = embedding_forward(INDICES, weight, padding_idx)
    np.testing.assert_array_equal(out, weight[INDICES])
    dout = random_like(rng, out.shape)
    dweight = embedding_backward(dout, cache)
    (expected,) = numerical_gradients(lambda w: embedding_forward(INDICES, w)[0], [weight], dout)
    if padding_idx is not None:
        expected[padding_idx] = 0
    assert rel_error(dweight, expected) < 1e-7
    assert dweight.shape == weight.shape and dweight[padding_idx or 0].any() == (padding_idx is None)


def test_embedding_sums_repeated_rows_and_leaves_unused_rows_zero(rng):
    weight = random_like(rng, (6, 2))
    _, cache = embedding_forward(INDICES, weight)
    dout = random_like(rng, INDICES.shape + (2,))
    dweight = embedding_backward(dout, cache)
    np.testing.assert_allclose(dweight[4], dout[1, :3].sum(axis=0))
    np.testing.assert_allclose(dweight[1], dout[0, 0] + dout[0, 2])
    assert not dweight[5].any()


@pytest.mark.parametrize("indices", [np.array(2), np.array([0, 2]), INDICES, INDICES[None]])
def test_embedding_matches_torch(rng, indices):
    torch = require_torch()
    weight = random_like(rng, (5, 3))
    out, cache = embedding_forward(indices, weight, padding_idx=2)
    dout = random_like(rng, out.shape)
    weight_t = torch.tensor(weight, requires_grad=True)
    out_t = torch.nn.functional.embedding(torch.tensor(indices), weight_t, padding_idx=2)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) == 0
    assert rel_error(embedding_backward(dout, cache), weight_t.grad.numpy()) < 1e-12


def test_embedding_module_accumulates_and_keeps_padding_row_zero(rng):
    layer = Embedding(5, 3, padding_idx=0, rng=np.random.default_rng(0))
    assert not layer.params["weight"][0].any() and layer.params["weight"][1:].all()
    out = layer(INDICES)
    dout = random_like(rng, out.shape)
    assert layer.backward(dout) is None
    first = layer.grads["weight"].copy()
    layer.backward(dout)
    np.testing.assert_allclose(layer.grads["weight"], 2 * first)
    assert not layer.grads["weight"][0].any() and first[4].any()
    layer.zero_grad()
    assert not layer.grads["weight"].any()


def test_embedding_module_init_matches_torch_statistics():
    weight = Embedding(2000, 50, rng=np.random.default_rng(0)).params["weight"]
    assert abs(weight.mean()) < 0.01 and abs(weight.std() - 1) < 0.01  # N(0, 1), as torch
    assert Embedding(3, 2, dtype=np.float32).params["weight"].dtype == np.float32
    assert Embedding(3, 2, padding_idx=-1).padding_idx == 2


def test_embedding_keeps_float32(rng):
    weight = random_like(rng, (5, 3), np.float32)
    out, cache = embedding_forward(INDICES, weight)
    dweight = embedding_backward(random_like(rng, out.shape, np.float32), cache)
    assert out.dtype == np.float32 and dweight.dtype == np.float32


def test_embedding_rejects_bad_input():
    weight = np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"indices must hold indices in \[0, 5\); got 5"):
        embedding_forward(np.array([1, 5]), weight)
    with pytest.raises(ValueError, match="got -1"):
        embedding_forward(np.array([-1, 0]), weight)
    with pytest.raises(TypeError, match="indices must have an integer dtype.*float64"):
        embedding_forward(np.array([1.0, 2.0]), weight)
    with pytest.raises(TypeError, match="indices must have an integer dtype.*bool"):
        embedding_forward(np.array([True]), weight)
    with pytest.raises(ValueError, match=r"weight must be 2-D.*\(5,\)"):
        embedding_forward(np.array([1]), np.zeros(5))
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-5, 5\); got 5"):
        embedding_forward(np.array([1]), weight, padding_idx=5)
    with pytest.raises(TypeError, match="padding_idx must be an int"):
        Embedding(5, 3, padding_idx=1.0)
    with pytest.raises(ValueError, match="embedding_dim"):
        Embedding(5, 0)
    _, cache = embedding_forward(np.array([1, 2]), weight)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3\)"):
        embedding_backward(np.zeros((2, 4)), cache)
    with pytest.raises(ValueError, match="before forward"):
        Embedding(5, 3).backward(np.zeros((1, 3)))


def test_embedding_does_not_mutate_read_only_inputs(rng):
    weight, indices = random_like(rng, (5, 3)), INDICES.copy()
    dout = random_like(rng, indices.shape + (3,))
    for array in (weight, indices, dout):
        array.flags.writeable = False
    out, cache = embedding_forward(indices, weight, padding_idx=1)
    embedding_backward(dout, cache)
    out[0, 0] = 7.0  # the output is a fresh array, not a view of the table
    assert weight[1, 0] != 7.0

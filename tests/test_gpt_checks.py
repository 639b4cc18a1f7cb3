"""GPT by finite differences (the loss and check_module), its state dict, and its rejection of bad input."""

import io

import numpy as np
import pytest
from helpers.numerics import rel_error

import gradcheck
from gradcheck.numeric import central_differences
from numpy_attention.models import GPT

TINY = dict(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=4)


def _tiny(**options):
    model = GPT(**{**TINY, **options}, rng=np.random.default_rng(0))
    for value in model.params.values():  # O(1) weights: gradients well above the differences' noise
        value += 0.5 * np.random.default_rng(value.size).standard_normal(value.shape)
    return model


@pytest.mark.parametrize("bias", [True, False])
def test_loss_gradient_of_every_parameter_by_central_differences(bias):
    model = _tiny(bias=bias)
    idx = np.array([[1, 3, 0, 2], [4, 4, 1, 0]])
    targets = np.array([[3, 0, -1, 1], [2, 1, 0, 4]])
    model.forward(idx, targets)
    model.zero_grad()
    model.backward()
    for name, param in model.params.items():
        numeric = central_differences(lambda: float(model.forward(idx, targets)[1]), param, 1e-6)
        np.testing.assert_allclose(model.grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_check_module_on_a_tiny_gpt_passes():
    # The dout-taking backward: d sum(logits * dout) for a random dout, every parameter.
    report = gradcheck.check_module(_tiny(), np.array([[1, 3, 0, 2], [4, 4, 1, 0]]))
    assert report.passed, report
    assert len(report.rows) >= len(_tiny().params)


def test_check_module_catches_a_wrong_gradient(monkeypatch):
    from numpy_attention.models import blocks

    def wrong_grad(dout, keep, p):  # the embedding dropout's backward off by 0.1 %
        return dout * 1.001

    monkeypatch.setattr(blocks, "dropout_grad", wrong_grad)
    assert not gradcheck.check_module(_tiny(), np.array([[1, 3, 0, 2]])).passed


def test_backward_accumulates_and_needs_a_forward():
    model = _tiny()
    with pytest.raises(ValueError, match="before forward"):
        model.backward()
    idx = np.array([[1, 2, 3]])
    model.forward(idx)
    with pytest.raises(ValueError, match="needs a forward with targets"):
        model.backward()
    model.forward(idx, idx)
    model.backward()
    once = {k: v.copy() for k, v in model.grads.items()}
    model.backward()
    for name in once:
        assert rel_error(model.grads[name], 2 * once[name]) < 1e-15


def test_state_dict_round_trip_and_file_round_trip():
    model, other = _tiny(), GPT(**TINY, rng=5)
    state = model.state_dict()
    assert "lm_head.weight" in state and np.array_equal(state["lm_head.weight"], state["transformer.wte.weight"])
    assert set(state) == set(model.params) | {"lm_head.weight"}
    other.load_state_dict(state)
    idx = np.array([[0, 1, 2, 3]])
    assert np.array_equal(other.forward(idx)[0], model.forward(idx)[0])
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    third = GPT(**TINY, rng=6)
    third.load(buffer)
    assert np.array_equal(third.forward(idx)[0], model.forward(idx)[0])
    with_mask = {**state, "transformer.h.0.attn.bias": np.tril(np.ones((1, 1, 4, 4)))}  # nanoGPT's buffer
    third.load_state_dict(with_mask)


@pytest.mark.parametrize("change,match", [
    (lambda s: s.pop("transformer.h.1.mlp.c_fc.weight"), "missing"),
    (lambda s: s.pop("lm_head.weight"), "lm_head.weight"),
    (lambda s: s.update({"transformer.h.2.ln_1.weight": np.ones(4)}), "unexpected"),
    (lambda s: s.update({"transformer.wpe.weight": np.zeros((5, 4))}), "shape"),
    (lambda s: s.update({"lm_head.weight": s["lm_head.weight"] + 1e-3}), "tied"),
    (lambda s: s.update({"transformer.ln_f.bias": np.full(4, np.nan)}), "NaN"),
])
def test_load_state_dict_rejects_and_leaves_the_model_unchanged(change, match):
    model = _tiny()
    before = model.state_dict()
    state = GPT(**TINY, rng=3).state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name])


def test_forward_rejects_bad_input():
    model = _tiny()
    with pytest.raises(ValueError, match="block_size = 4"):
        model.forward(np.zeros((1, 5), dtype=int))
    with pytest.raises(ValueError, match=r"idx must hold indices in \[0, 5\)"):
        model.forward(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="idx must hold indices"):
        model.forward(np.array([[0, -1]]))
    with pytest.raises(TypeError, match="idx must have an integer dtype"):
        model.forward(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        model.forward(np.array([0, 1]))
    with pytest.raises(ValueError, match="targets must have idx's shape"):
        model.forward(np.zeros((2, 3), dtype=int), np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="targets must hold indices"):
        model.forward(np.zeros((1, 2), dtype=int), np.array([[0, 7]]))
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        model.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPT(5, 4, 1, 3, 4)
    with pytest.raises(TypeError, match="n_layer"):
        GPT(5, 4, 1.5, 2, 4)
    with pytest.raises(ValueError, match="dropout"):
        GPT(5, 4, 1, 2, 4, dropout=1.0)
    with pytest.raises(TypeError, match="dtype"):
        GPT(5, 4, 1, 2, 4, dtype=np.int32)


def test_dropout_is_active_in_training_only_and_replays_for_the_check():
    model = _tiny(dropout=0.3)
    idx = np.array([[1, 3, 0, 2]])
    eval_logits = model.eval().forward(idx)[0]
    assert np.array_equal(eval_logits, model.forward(idx)[0])
    model.train()
    assert not np.allclose(model.forward(idx)[0], eval_logits)
    report = gradcheck.check_module(model, idx)  # check_module rewinds model.rng: one mask for every evaluation
    assert report.passed, report

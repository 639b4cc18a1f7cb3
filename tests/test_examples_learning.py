"""Run the learning examples as a user would, and check what they print and draw."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from helpers.example_runner import ROOT, assert_png, printed_matrix, run_example
from helpers.numerics import rel_error

from gradcheck import numerical_gradients


@pytest.fixture(autouse=True)
def _needs_matplotlib():
    pytest.importorskip("matplotlib", reason="the examples draw with matplotlib: pip install matplotlib")


def test_masks_example(tmp_path):
    stdout = run_example("masks.py", tmp_path)
    assert_png(tmp_path / "masks.png")
    causal = printed_matrix(stdout, "causal weights")
    assert causal.shape == (6, 6)
    assert not np.triu(causal, k=1).any()
    np.testing.assert_allclose(causal.sum(axis=1), 1, atol=5e-4)
    padding = printed_matrix(stdout, "padding weights")
    assert not padding[:, 4:].any() and padding[:, :4].all()
    window = printed_matrix(stdout, "window weights")
    distance = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    assert not window[distance > 1].any() and window[distance <= 1].all()

    left_padded = printed_matrix(stdout, "causal + left padding weights")
    assert not left_padded[:2].any() and not left_padded[:, :2].any()
    np.testing.assert_allclose(left_padded[2:].sum(axis=1), 1, atol=5e-4)
    assert "fully masked query rows: [0, 1]" in stdout
    assert not printed_matrix(stdout, "their output rows").any()
    assert not printed_matrix(stdout, "their dQ rows").any()
    assert "NaN anywhere in output, weights or gradients: False" in stdout

    assert "[[nan nan nan nan nan nan]]" in stdout.split("textbook softmax of a fully masked row:")[1]
    np.testing.assert_array_equal(
        printed_matrix(stdout, "softmax of row 0 with every key 'masked' by -1e9"),
        printed_matrix(stdout, "softmax of row 0 with no mask"),
    )


def test_gradient_flow_example(tmp_path):
    stdout = run_example("gradient_flow.py", tmp_path)
    assert_png(tmp_path / "gradient_flow.png")
    weights = printed_matrix(stdout, "P = softmax(S)")
    d_weights = printed_matrix(stdout, "dP = (dO V^T) * Z")
    d_scores = printed_matrix(stdout, "dS = P * (dP - D)")
    blocked = np.triu(np.ones((5, 5), dtype=bool), k=1)
    assert not weights[blocked].any() and not d_scores[blocked].any()
    assert np.abs(d_weights[blocked]).min() > 0  # dP is dense: only the softmax backward masks it
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=5e-4)
    # The printed dS is the softmax backward of the printed dP, to the printed precision.
    expected = weights * (d_weights - (d_weights * weights).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(d_scores, expected, atol=2e-3)
    np.testing.assert_allclose(printed_matrix(stdout, "row sums of dS"), 0, atol=1e-4)
    np.testing.assert_allclose(
        printed_matrix(stdout, "rowsum(dP * P)"), printed_matrix(stdout, "D = rowsum(dO * O)"), atol=1e-4
    )
    assert "-0.0000" not in stdout
    assert float(re.search(r"largest \|dS\| on blocked keys: (\S+)", stdout).group(1)) == 0
    assert float(re.search(r"largest \|dP\| on blocked keys: (\S+)", stdout).group(1)) > 0.1
    assert not printed_matrix(stdout, "dQ of query 0, which sees a single key").any()
    assert float(re.search(r"the pair's output is O: max \|difference\| = (\S+)", stdout).group(1)) == 0


def test_train_reverse_example_short_run_learns(tmp_path):
    stdout = run_example("train_reverse.py", tmp_path, "--epochs", "3", "--train-size", "384", "--test-size", "200")
    assert_png(tmp_path / "train_reverse_loss.png")
    assert_png(tmp_path / "train_reverse_attention.png")
    epochs = re.findall(r"^epoch +(\d+)  loss (\S+)  held-out token accuracy (\S+)", stdout, flags=re.M)
    assert [int(e) for e, _, _ in epochs] == [1, 2, 3]
    losses = [float(loss) for _, loss, _ in epochs]
    assert losses[-1] < losses[0]
    last_line = stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"final accuracy: \d\.\d{4}", last_line)
    assert float(last_line.split(": ")[1]) == float(epochs[-1][2])


def test_train_reverse_rejects_bad_options(tmp_path):
    with pytest.raises(AssertionError, match="--epochs must be a positive int; got 0"):
        run_example("train_reverse.py", tmp_path, "--epochs", "0")


def test_train_reverse_backprop_matches_finite_differences(monkeypatch):
    """The whole model's hand-written backward, every parameter, against central differences."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location("train_reverse", ROOT / "examples" / "train_reverse.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = np.random.default_rng(3)
    model = example.ReverseModel(embed_dim=8, num_heads=2, rng=rng)
    tokens = rng.integers(0, example.VOCAB, size=(3, example.SEQ_LEN))
    slots = [(module, name) for module in model.modules for name in module.params]

    def loss_with(*params):
        saved = [module.params[name] for module, name in slots]
        for (module, name), param in zip(slots, params):
            module.params[name] = param
        try:
            logits, _ = model.forward(tokens)
            return example.cross_entropy_forward(logits.reshape(-1, example.VOCAB), tokens[:, ::-1].reshape(-1))[0]
        finally:
            for (module, name), param in zip(slots, saved):
                module.params[name] = param

    example.loss_and_gradient(model, tokens)
    numeric = numerical_gradients(loss_with, [module.params[name] for module, name in slots], np.array(1.0))
    analytic = [module.grads[name] for module, name in slots]
    errors = {name: np.abs(a - n).max() for (_, name), a, n in zip(slots, analytic, numeric)}
    flat = np.concatenate([a.ravel() for a in analytic]), np.concatenate([n.ravel() for n in numeric])
    assert rel_error(*flat) < 1e-7, f"largest absolute error per parameter: {errors}"
    assert np.abs(model.position_embedding.grads["weight"]).min() > 0  # every position received gradient

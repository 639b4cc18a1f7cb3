"""Run the examples as a user would, and check what they print and draw."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.example_runner import assert_png, printed_matrix, run_example

from gradcheck import numerical_gradients
from numpy_attention.functional import attention_forward


def test_self_attention_example_reproduces_the_seed(tmp_path):
    pytest.importorskip("matplotlib", reason="the example draws with matplotlib: pip install matplotlib")
    stdout = run_example("self_attention.py", tmp_path)
    np.testing.assert_array_equal(
        printed_matrix(stdout, "attention output"),
        [[0.8137, 0.4935, 0.5065, 0.1863], [0.4935, 0.8137, 0.1863, 0.5065], [0.7259, 0.7259, 0.2741, 0.2741]],
    )
    np.testing.assert_array_equal(
        printed_matrix(stdout, "attention weights"),
        [[0.5065, 0.1863, 0.3072], [0.1863, 0.5065, 0.3072], [0.2741, 0.2741, 0.4519]],
    )
    assert_png(tmp_path / "self_attention_weights.png")

    # The printed gradients equal finite differences of the forward, to the 4 printed decimals.
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], dtype=np.float64)
    dout = printed_matrix(stdout, "upstream gradient dOut")
    expected = numerical_gradients(lambda q, k, v: attention_forward(q, k, v)[0], [x, x, x], dout)
    for label, grad in zip(("dQ", "dK", "dV"), expected):
        np.testing.assert_allclose(printed_matrix(stdout, label), grad, atol=6e-5)
    np.testing.assert_allclose(printed_matrix(stdout, "dX = dQ + dK + dV"), sum(expected), atol=6e-5)

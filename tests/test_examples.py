"""Run the examples as a user would, and check what they print and draw."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import numerical_gradients
from numpy_attention.functional import attention_forward

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, outdir: Path, *args: str) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--outdir", str(outdir), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def printed_matrix(stdout: str, label: str) -> np.ndarray:
    """The matrix printed under the line ``label:``."""
    block = ("\n" + stdout).split(f"\n{label}:\n", 1)[1]
    rows = []
    for line in block.splitlines():
        if not line.strip().startswith("["):
            break
        rows.append([float(x) for x in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", line)])
    return np.array(rows)


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
    png = tmp_path / "self_attention_weights.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The printed gradients equal finite differences of the forward, to the 4 printed decimals.
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]], dtype=np.float64)
    dout = printed_matrix(stdout, "upstream gradient dOut")
    expected = numerical_gradients(lambda q, k, v: attention_forward(q, k, v)[0], [x, x, x], dout)
    for label, grad in zip(("dQ", "dK", "dV"), expected):
        np.testing.assert_allclose(printed_matrix(stdout, label), grad, atol=6e-5)
    np.testing.assert_allclose(printed_matrix(stdout, "dX = dQ + dK + dV"), sum(expected), atol=6e-5)

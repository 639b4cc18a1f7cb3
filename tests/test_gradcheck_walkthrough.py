"""The walkthrough example: a user's own layer, a passing and a failing check, the figure."""

from __future__ import annotations

import re

import pytest
from helpers.example_runner import assert_png, run_example


def test_walkthrough_passes_the_right_layer_and_points_at_the_wrong_gradient(tmp_path):
    pytest.importorskip("matplotlib", reason="the example draws with matplotlib: pip install matplotlib")
    stdout = run_example("gradcheck_walkthrough.py", tmp_path, "--no-torch")  # step 6: tests/test_gradcheck_torch
    steps = stdout.split("\n=== ")[1:]
    assert [step[:2] for step in steps] == ["1.", "2.", "3.", "4.", "5.", "6."]
    assert steps[1].rstrip().endswith("PASSED: 2 tensors agree (exhaustive: every element)")
    assert "FAILED ('x'): 'x' is off at" in steps[2] and "FAIL (24/24)" in steps[2]
    gain_row = next(line for line in steps[2].splitlines() if line.strip().startswith("gain"))
    assert gain_row.rstrip().endswith("ok")  # the bug is in dx alone, and the report says so
    table_index = re.search(r"'x' is off at (\(\d+, \d+\))", steps[2]).group(1)
    assert f"worst at {table_index}" in steps[2]
    assert "FAILED ('x')" in steps[3]
    assert "check_module(RMSNorm)" in steps[4] and "PASSED" in steps[4]
    assert "skipped (--no-torch)" in steps[5]
    assert_png(tmp_path / "gradcheck_walkthrough.png")

"""benchmarks/gpt.py runs end to end at a tiny size (no timing is asserted)."""

from helpers.numerics import require_torch

from benchmarks.gpt import main


def test_quick_gpt_benchmark_compares_losses_and_prints_the_ratio(capsys):
    require_torch()
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "relative difference" in out and "ratio numpy / torch" in out
    difference = float(out.split("relative difference ")[1].split(")")[0])
    assert difference < 1e-5  # float32: the same loss before anything is timed

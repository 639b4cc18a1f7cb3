"""examples/train_gpt.py runs as a user would run it, learns, and draws its figures (a short version)."""

import re

import pytest
from helpers.example_runner import assert_png, run_example


@pytest.fixture(autouse=True)
def _needs_matplotlib():
    pytest.importorskip("matplotlib", reason="the examples draw with matplotlib: pip install matplotlib")


def test_train_gpt_short_run_learns_and_draws(tmp_path):
    stdout = run_example("train_gpt.py", tmp_path, "--steps", "60", "--eval-interval", "30", "--eval-batches", "2",
                         "--n-layer", "2", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
                         "--sample-tokens", "40")
    assert_png(tmp_path / "train_gpt_loss.png")
    assert_png(tmp_path / "train_gpt_attention.png")
    progress = re.findall(r"step +(\d+)/60 +train ([\d.]+) +val ([\d.]+)", stdout)
    assert [int(step) for step, _, _ in progress] == [0, 30, 60]
    entropy = float(re.search(r"unigram entropy: ([\d.]+)", stdout).group(1))
    final = float(re.search(r"final validation loss: ([\d.]+)", stdout).group(1))
    assert float(progress[0][2]) > entropy > final  # starts above the unigram entropy, ends below it
    sample = stdout.split("sample:\n", 1)[1].splitlines()[0]
    assert sample.startswith("def ") and len(sample) > 4


def test_train_gpt_llama_configuration_runs(tmp_path):
    stdout = run_example("train_gpt.py", tmp_path, "--steps", "20", "--eval-interval", "20", "--eval-batches", "1",
                         "--n-layer", "1", "--n-embd", "16", "--n-head", "4", "--block-size", "16",
                         "--sample-tokens", "10", "--llama")
    assert "norm='rms'" in stdout and "position='rope'" in stdout and "n_kv_head=2" in stdout
    assert_png(tmp_path / "train_gpt_attention.png")


def test_train_gpt_rejects_bad_options(tmp_path):
    with pytest.raises(AssertionError, match="must be a multiple of --n-head"):
        run_example("train_gpt.py", tmp_path, "--n-embd", "30", "--n-head", "4")
    with pytest.raises(AssertionError, match="--steps must be a positive int"):
        run_example("train_gpt.py", tmp_path, "--steps", "0")

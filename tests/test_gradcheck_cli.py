"""``python -m gradcheck``: the whole suite passes, options work, a failure exits 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.example_runner import ROOT

import gradcheck.__main__ as cli
from gradcheck import bugs, suite
from gradcheck.reference import torch_available
from gradcheck.suite import ENTRIES, Entry, Target


def test_every_entry_passes_in_float64(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith(f"PASSED: {len(ENTRIES)} entries")
    for entry in ENTRIES:
        assert entry.name in out


def test_every_entry_passes_in_float32_fast(capsys):
    assert cli.main(["--dtype", "float32", "--fast"]) == 0
    assert "float64 is the recommended dtype" in capsys.readouterr().out


def test_suite_covers_every_op_and_module():
    families = {entry.name.split("/")[0] for entry in ENTRIES}
    assert {"softmax", "linear", "attention", "embedding", "cross_entropy", "Linear", "Embedding",
            "ScaledDotProductAttention", "MultiHeadAttention"} <= families
    names = " ".join(entry.name for entry in ENTRIES)
    for option in ("gqa", "mqa", "causal", "dropout", "bool-mask", "float-mask", "scale", "no-bias", "unbatched",
                   "kdim-vdim", "bias-kv-zero-attn", "seq-first", "no-weights", "wide-64"):
        assert option in names
    assert len({entry.name for entry in ENTRIES}) == len(ENTRIES)


def test_suite_has_the_tiers_of_what_small_inputs_cannot_show():
    families = {entry.name.split("/")[0] for entry in ENTRIES}
    assert {"tiles", "stress", "dropout", "weights", "MultiHeadAttention-pairs", "optim"} <= families
    for impl in ("dense", "flash", "textbook", "textbook-flash"):
        for tier in ("tiles", "stress", "dropout"):
            assert any(entry.name.startswith(f"{tier}/{impl}/") for entry in ENTRIES)


def test_torch_only_tiers_say_they_were_skipped_without_torch(capsys):
    assert cli.main(["--only", "stress/dense/nan-in-q", "--no-torch"]) == 0
    assert "skipped: torch-only tier" in capsys.readouterr().out


def test_only_and_json(tmp_path, capsys):
    path = tmp_path / "out" / "report.json"
    assert cli.main(["--only", "softmax/*", "--json", str(path), "--no-torch"]) == 0
    data = json.loads(path.read_text())
    assert data["passed"] is True and data["torch"] is None and data["dtype"] == "float64"
    assert [e["name"] for e in data["entries"]] == ["softmax/last-axis", "softmax/axis-0", "softmax/axis-1"]
    assert data["entries"][0]["reports"][0]["rows"][0]["name"] == "x"
    capsys.readouterr()
    assert cli.main(["--only", "embedding/padding-idx", "--json", str(path)]) == 0
    assert "finite differences  skipped: the padding row gets no gradient by design" in capsys.readouterr().out
    assert json.loads(path.read_text())["entries"][0]["skipped_finite_differences"].startswith("the padding row")
    assert cli.main(["--only", "Linear/*", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["Linear/2d", "Linear/3d", "Linear/no-bias"]
    assert cli.main(["--only", "no-such-entry"]) == 1


def test_a_failing_entry_prints_its_table_and_exits_1(monkeypatch, capsys, tmp_path):
    softmax_bug = next(bug for bug in bugs.BUGS if bug.name == "softmax-missing-rowsum").wrong()
    broken = Entry("softmax/broken", lambda dt: Target(softmax_bug.inputs, softmax_bug.forward, softmax_bug.backward))
    crashing = Entry("softmax/crashing", lambda dt: 1 / 0)
    monkeypatch.setattr(cli, "ENTRIES", [ENTRIES[0], broken, crashing])
    path = tmp_path / "report.json"
    assert cli.main(["--json", str(path)]) == 1
    out = capsys.readouterr().out
    assert "[softmax/broken]" in out and "FAIL (15/15)" in out
    assert "softmax/crashing" in out and "ZeroDivisionError" in out
    assert "FAILED: 2 of" in out.splitlines()[-1]
    data = json.loads(path.read_text())
    assert data["passed"] is False and data["entries"][2]["error"].startswith("ZeroDivisionError")


def test_module_entry_point_exit_codes():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "gradcheck", "--fast", "--no-torch"]
    ok = subprocess.run([*run, "--only", "attention/gqa"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "attention/gqa-causal-dropout" in ok.stdout and "PASSED" in ok.stdout
    bad = subprocess.run([*run, "--dtype", "float16"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.mark.parametrize("name", ["attention/dropout", "ScaledDotProductAttention/dropout-train"])
def test_dropout_entries_really_drop(name):
    target = next(entry for entry in ENTRIES if entry.name == name).build("float64")
    if target.module is not None:
        out, _ = target.module(*target.inputs)
        target.module.eval()
        assert (target.module(*target.inputs)[0] != out).any()
    else:
        assert target.forward(*target.inputs)[1].dropout_mask is not None


def test_a_registered_tiled_implementation_gets_its_entries(monkeypatch):
    """The flash pair registers itself in ATTENTION_IMPLS; the suite then checks it on the tiling-sensitive cases."""
    from numpy_attention import functional as F
    from numpy_attention.attention_impls import ATTENTION_IMPLS

    block_sizes = set()

    def tiled_forward(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, *, rng=None,
                      block_size=64):
        block_sizes.add(block_size)
        return F.attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng)

    monkeypatch.setitem(ATTENTION_IMPLS, "tiled", (tiled_forward, F.attention_backward))
    entries = suite.tiled_entries("tiled")
    assert any(e.name.startswith("MultiHeadAttention/tiled") for e in entries)
    for entry in entries:
        result = cli.run_entry(entry, np.dtype(np.float64), fast=True, use_torch=torch_available())
        assert result["error"] is None and all(report.passed for report in result["reports"]), entry.name
    assert 2 in block_sizes  # the functional entries ask for tiles smaller than L and S


def test_suite_covers_rope_rms_norm_score_mods_and_sinks():
    names = [entry.name for entry in ENTRIES]
    for expected in ("rope/half-split", "rope/interleaved", "rms_norm/weight", "rms_norm/no-weight",
                     "RMSNorm/last-axis", "RMSNorm/no-affine", "score_mod/softcap", "score_mod/alibi",
                     "score_mod/softcap-alibi", "sinks/window-empty-row"):
        assert expected in names

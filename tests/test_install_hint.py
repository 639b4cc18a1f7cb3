"""One torch install hint, defined once (TORCH_HINT) and shown wherever torch is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradcheck.__main__ import main
from numpy_attention.optional import TORCH_HINT, import_torch

ROOT = Path(__file__).resolve().parents[1]
DEFINED_IN = ROOT / "numpy_attention" / "optional.py"


def test_the_hint_says_a_cpu_build_is_enough_and_what_the_extra_pulls():
    assert "CPU build" in TORCH_HINT and "torch==2.13.0" in TORCH_HINT
    assert "numpy_attention[torch]" in TORCH_HINT and "CUDA" in TORCH_HINT


def test_no_other_torch_install_hint_in_the_code():
    """Every .py file names torch's installation only through the constant."""
    stray = []
    # The project's own files (git's list): not a virtual environment's packages inside the checkout.
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed, "git listed no Python file"
    for path in sorted(ROOT / name for name in listed):
        if path == DEFINED_IN or path == Path(__file__).resolve() or not path.exists():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"pip install[^\n]*torch|numpy_attention\[torch\]", line):
                stray.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert stray == []


def test_readme_and_setup_cfg_give_the_same_hint():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert TORCH_HINT in readme
    assert readme.count("numpy_attention[torch]") == 1  # only inside the hint
    assert "TORCH_HINT" in (ROOT / "setup.cfg").read_text()


def test_errors_and_the_cli_show_the_hint_when_torch_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=re.escape(TORCH_HINT)):
        import_torch("to_torch")
    assert main(["--only", "softmax/last-axis", "--fast"]) == 0
    assert TORCH_HINT in capsys.readouterr().out

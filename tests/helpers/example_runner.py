"""Run an example as a user would (``python examples/NAME.py --outdir DIR``) and read what it printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, outdir: Path, *args: str) -> str:
    """Run examples/NAME with --outdir and the extra args; fail with its stderr if it fails."""
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


def assert_png(path: Path) -> None:
    """The file exists and is a PNG image."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"

"""The tutorials in notebooks/ run from top to bottom (as scripts, headless) and are valid
jupytext percent-format files: a YAML header, markdown cells and code cells."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.math_spans import percent_cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_the_three_tutorials_exist() -> None:
    names = [path.stem for path in NOTEBOOKS]
    assert names[:3] == ["01_attention_backward", "02_online_softmax_and_tiled_attention", "03_check_your_own_layer"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_percent_format(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ---\n# jupyter:\n#   jupytext:\n")
    assert "#       format_name: percent\n" in text.split("# ---")[1]
    cells = percent_cells(text)
    kinds = [kind for kind, _ in cells]
    assert kinds[0] == "markdown" and cells[0][1].startswith("# "), "opens with a title cell"
    assert kinds.count("markdown") >= 4 and kinds.count("code") >= 4
    assert all(body.strip() for _, body in cells), "no empty cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    """Run as a script in a scratch folder: every assert in it (equal to the library) must hold."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
        "PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_jupytext_reads_the_same_cells(path: Path) -> None:
    """jupytext (what opens the .py in Jupyter) sees the cells the tests and the site see."""
    jupytext = pytest.importorskip("jupytext", reason='jupytext is not installed: pip install -e ".[docs]"')
    notebook = jupytext.read(path)
    ours = percent_cells(path.read_text(encoding="utf-8"))
    assert [(cell.cell_type, cell.source.strip()) for cell in notebook.cells] == [(k, t.strip()) for k, t in ours]
    assert notebook.metadata["kernelspec"]["language"] == "python"

"""The pages of the documentation site say true things: the guide's snippets run, links resolve.

The site itself is built and opened in a browser by tests/test_docs_site.py.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "gradcheck.md"


def test_gradcheck_guide_snippets_run() -> None:
    """docs/gradcheck.md's Python blocks run in order in one namespace; their asserts hold.
    The compare_with_torch block runs when torch is installed."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    for block in blocks:
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue
        exec(compile(block, str(GUIDE), "exec"), namespace)
    assert namespace["report"].passed and not namespace["wrong"].passed


def test_home_page_links_resolve_inside_the_site() -> None:
    hooks = pytest.importorskip("tools.mkdocs_hooks", reason='mkdocs is not installed: pip install -e ".[docs]"')
    page = hooks.home_page()
    targets = [target for _, _, target in hooks.LINK.findall(page) if not re.match(r"[a-z]+:|#", target)]
    assert targets, "the README has links and figures"
    for target in targets:
        assert (ROOT / "docs" / target.split("#")[0]).exists(), target
    assert "](docs/" not in page


def test_each_example_page_has_its_docstring_figures_and_source() -> None:
    hooks = pytest.importorskip("tools.mkdocs_hooks", reason='mkdocs is not installed: pip install -e ".[docs]"')
    scripts = hooks.example_scripts()
    assert "masks" in [path.stem for path in scripts] and "_common" not in [path.stem for path in scripts]
    for path in scripts:
        page = hooks.example_page(path)
        summary = path.read_text(encoding="utf-8").split('"""')[1].split("\n")[0]
        assert summary in page
        for figure in (ROOT / "docs" / "figures").glob(f"{path.stem}*.png"):
            assert f"](../figures/{figure.name})" in page
        assert "    def main(" in page or "    if __name__" in page

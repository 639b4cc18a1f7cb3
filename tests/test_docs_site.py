"""The documentation site builds (mkdocs build --strict) and its equations render in a real browser.

The site is built into a temporary folder; headless Chromium (Debian's `chromium`) opens the
pages with math from the disk, as an offline reader would, runs their scripts, and dumps the DOM:
every span that tools/math_spans.py finds in the page's Markdown must be one rendered KaTeX
element, with no `.katex-error`. A screenshot of the derivations page goes to
build/screenshots/derivations.png. Without mkdocs, chromium or KaTeX the tests skip, except under
CI=true, where .ci/run must have installed them and they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tools.math_spans import find_spans

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "build" / "screenshots" / "derivations.png"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
PAGES_WITH_MATH = [*(f"{name}.html" for name in ("derivations", "gradcheck")),
                   *(f"tutorials/{path.stem}.html" for path in NOTEBOOKS)]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=15000",
]


def require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, but fail under CI, where .ci/run must have installed it."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run must install it)")
        pytest.skip(reason)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    require(path is not None, "chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(importlib.util.find_spec("mkdocs") is not None, 'mkdocs is not installed: pip install -e ".[docs]"')
    require(
        (ROOT / "tools" / "katex" / "node_modules" / "katex" / "dist").is_dir(),
        "KaTeX is not installed: npm ci --prefix tools/katex",
    )
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


class Elements(HTMLParser):
    """Counts the elements of a DOM by class, and the external resources it loads."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, int] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        for name in classes:
            self.classes[name] = self.classes.get(name, 0) + 1
        for key in ("src", "href"):
            value = attributes.get(key) or ""
            if value.startswith(("http:", "https:", "//")) and (tag in ("script", "img") or attributes.get("rel") in (
                "stylesheet", "preload", "preconnect", "icon")):
                self.external.append(value)


def dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, check=False, timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_site_has_every_page(site: Path) -> None:
    examples = sorted(path.stem for path in (ROOT / "examples").glob("*.py") if not path.name.startswith("_"))
    assert sorted(path.stem for path in (site / "examples").glob("*.html")) == examples
    assert sorted(path.stem for path in (site / "tutorials").glob("*.html")) == [path.stem for path in NOTEBOOKS]
    packages = [path.parent.name for path in (ROOT / "numpy_attention").glob("*/__init__.py")]
    api_pages = ["numpy_attention", "gradcheck", *(f"numpy_attention.{name}" for name in packages
                                                   if name in ("functional", "kernels", "models"))]
    for name in ("index.html", "derivations.html", "gradcheck.html", *(f"api/{page}.html" for page in api_pages)):
        assert (site / name).is_file(), name
    api = (site / "api" / "numpy_attention.functional.html").read_text(encoding="utf-8")
    for function in ("attention_forward", "attention_backward", "flash_attention_forward", "softmax_backward"):
        assert f'id="numpy_attention.functional.{function}"' in api, function
    assert ":func:<code>" not in api, "Sphinx roles are turned into plain code"
    for name in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/KaTeX_Main-Regular.woff2"):
        assert (site / "assets" / "katex" / name).is_file(), name


def page_markdown(page: str) -> str:
    """The Markdown a page is built from: a file of docs/, or a notebook's generated page."""
    if page.startswith("tutorials/"):
        from tools.mkdocs_hooks import tutorial_page

        return tutorial_page(ROOT / "notebooks" / page.replace("tutorials/", "").replace(".html", ".py"))
    return (ROOT / "docs" / page.replace(".html", ".md")).read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES_WITH_MATH)
def test_every_equation_renders_in_chromium(site: Path, page: str) -> None:
    spans, problems = find_spans(page_markdown(page))
    assert problems == [] and spans
    dom = Elements()
    dom.feed(dump_dom(site / page))
    assert dom.classes.get("katex-error", 0) == 0, "KaTeX could not render some equations"
    assert dom.classes.get("arithmatex", 0) == len(spans), "the Markdown and the site disagree on the math spans"
    # One .katex element per equation: a display equation is a .katex inside a .katex-display.
    assert dom.classes.get("katex", 0) == len(spans)
    assert dom.classes.get("katex-display", 0) == sum(span.display for span in spans)
    assert dom.external == [], "the page loads resources from the network"


def test_screenshot_of_the_derivations(site: Path) -> None:
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
             f"--screenshot={SCREENSHOT}", (site / "derivations.html").as_uri()],
            capture_output=True, text=True, check=False, timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    header = SCREENSHOT.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2400)

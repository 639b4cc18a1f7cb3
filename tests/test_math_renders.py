"""Every equation of README.md, docs/*.md and the notebooks' markdown renders with KaTeX, strictly.

No control character either.

The spans are found by tools/math_spans.py (the documentation site's rules: no math in code, `$$`
blocks of their own, `\\$` a dollar sign) and rendered by tools/katex/render_math.js with
`throwOnError: true, strict: "error"`. KaTeX comes from `npm ci --prefix tools/katex` (the
version pinned by tools/katex/package-lock.json; `.ci/run` installs it). Without node or KaTeX the
test skips, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.math_spans import control_characters, find_spans, notebook_markdown, spans_of_file

ROOT = Path(__file__).resolve().parents[1]
KATEX_DIR = ROOT / "tools" / "katex"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, but fail under CI, where .ci/run must have installed it."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run must install it)")
        pytest.skip(reason)


def render(spans: list) -> dict:
    """Run the KaTeX script on the spans; its JSON answer."""
    require(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require(
        (KATEX_DIR / "node_modules" / "katex").is_dir(),
        "KaTeX is not installed: npm ci --prefix tools/katex",
    )
    payload = json.dumps([{"tex": span.tex, "display": span.display} for span in spans])
    result = subprocess.run(
        ["node", str(KATEX_DIR / "render_math.js")], input=payload, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(path.relative_to(ROOT)) for path in DOCUMENTS])
def test_every_equation_renders(path: Path) -> None:
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    assert control_characters(text) == [], f"{path.name}: control characters (line, char)"
    spans, problems = spans_of_file(path)
    assert problems == [], f"{path.name}: " + "; ".join(problems)
    answer = render(spans)
    errors = [f"line {spans[e['index']].line}: {spans[e['index']].tex!r}: {e['message']}" for e in answer["errors"]]
    assert errors == [], f"{path.name}: KaTeX {answer['katex']} rejects:\n" + "\n".join(errors)
    assert answer["rendered"] == len(spans)
    print(f"{path.name}: {len(spans)} spans rendered ({sum(span.display for span in spans)} display)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_every_equation_of_the_notebooks_renders(path: Path) -> None:
    """The notebooks' markdown cells too (Jupyter renders them with MathJax; KaTeX is stricter)."""
    text = path.read_text(encoding="utf-8")
    assert control_characters(text) == []
    spans, problems = find_spans(notebook_markdown(text))
    assert problems == [] and spans, problems
    answer = render(spans)
    assert answer["errors"] == [] and answer["rendered"] == len(spans), answer["errors"]
    print(f"{path.name}: {len(spans)} spans rendered")


def test_the_documents_have_equations() -> None:
    """The derivations are mostly math: finding almost none would mean the extractor is broken."""
    assert len(NOTEBOOKS) >= 3
    spans, _ = spans_of_file(ROOT / "docs" / "derivations.md")
    assert len(spans) > 300
    assert sum(span.display for span in spans) > 50


def test_katex_rejects_what_it_should() -> None:
    """The renderer is strict: a parse error, an unknown command, Unicode text in math, a comment fail."""
    bad = ["\\frac{1}{", "\\notacommand x", "é", "x % a comment", "a_{b", "\\left( x"]
    good = ["\\frac{1}{2}", "\\operatorname{rowsum}(dP \\odot P)", "\\lVert q \\rVert"]
    spans, _ = find_spans("\n\n".join(f"${tex}$" for tex in bad + good))
    assert len(spans) == len(bad) + len(good)
    answer = render(spans)
    assert sorted(error["index"] for error in answer["errors"]) == list(range(len(bad)))


def test_control_characters_are_caught() -> None:
    """The Cauchy-Schwarz equation once had \\r and \\t turned into control characters: KaTeX reads
    a tab as a space and renders the broken TeX, so the control characters are checked apart."""
    broken = "$$\\lVert q \r" + "Vert \\qquad (\t" + "ext{scalar})$$"
    assert [char for _, char in control_characters(broken)] == ["'\\r'", "'\\t'"]
    assert control_characters("$$a\nb$$") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inline $a + b$ and $c$", [("a + b", False), ("c", False)]),
        ("$$\nx = 1\n$$", [("\nx = 1\n", True)]),
        ("- item\n\n  $$x$$", [("x", True)]),
        ("code `$x$` and ``a ` $y$`` are not math, $z$ is", [("z", False)]),
        ("```python\ncost = '$5'\n$x$\n```\n\n$w$", [("w", False)]),
        ("a dollar \\$5 and $q$", [("q", False)]),
        ("two lines $a +\nb$ of math", [("a +\nb", False)]),
        ("$\\$$ and $\\{x\\}$", [("\\$", False), ("\\{x\\}", False)]),
    ],
)
def test_spans_found(text: str, expected: list) -> None:
    spans, problems = find_spans(text)
    assert problems == []
    assert [(span.tex, span.display) for span in spans] == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("costs $5 and $", "opens no math span"),
        ("inline $$x$$ display", "display math must be a block of its own"),
        ("$ x$", "opens no math span"),
    ],
)
def test_stray_dollars_are_problems(text: str, problem: str) -> None:
    _, problems = find_spans(text)
    assert problems and all(problem in message for message in problems), problems

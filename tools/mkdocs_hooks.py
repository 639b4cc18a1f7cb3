"""MkDocs hooks (mkdocs.yml `hooks:`): pages made from what the repository already has, and KaTeX.

- The home page is README.md, with its links made relative to docs/ (a path outside docs/ is
  shown as code, since the site does not hold it).
- Each example `examples/NAME.py` gets a page `examples/NAME.md`: its docstring, the figures
  `docs/figures/NAME*.png` it draws, and its source. The nav's "Examples" section lists them.
- Each tutorial `notebooks/NAME.py` (jupytext percent format) gets a page `tutorials/NAME.md`:
  its markdown cells as text, its code cells as code. The nav's "Tutorials" section lists them.
- The API reference has a page `api/PACKAGE.md` (mkdocstrings) per package of API_PACKAGES that
  exists, in the nav's "API reference" section; any other top-level page of docs/ joins the nav.
- KaTeX's dist (the version tools/katex/package-lock.json pins; `npm ci --prefix tools/katex`
  installs it) is copied into the site under `assets/katex/`, so that the math renders offline,
  with no CDN.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mkdocs loads this file by its path; the repository root is not importable yet
    sys.path.insert(0, str(ROOT))
from tools.math_spans import percent_cells  # noqa: E402

KATEX_DIST = ROOT / "tools" / "katex" / "node_modules" / "katex" / "dist"
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")
# The API reference: one page per package that exists (the list names those other branches add).
API_PACKAGES = ("numpy_attention", "numpy_attention.functional", "numpy_attention.kernels", "numpy_attention.models",
                "gradcheck")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def example_scripts() -> list[Path]:
    """examples/*.py that are examples (not helpers such as _common.py), sorted by name."""
    return sorted(path for path in (ROOT / "examples").glob("*.py") if not path.name.startswith("_"))


def example_title(path: Path) -> str:
    return path.stem.replace("_", " ").capitalize()


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.py"))


def tutorial_title(path: Path) -> str:
    """The notebook's title: the first line of its first markdown cell, without the '# '."""
    return percent_cells(path.read_text(encoding="utf-8"))[0][1].split("\n")[0].lstrip("# ").strip()


def api_packages() -> list[str]:
    return [name for name in API_PACKAGES if (ROOT / name.replace(".", "/") / "__init__.py").is_file()]


def page_title(path: Path) -> str:
    """The first heading of a Markdown file, else its name."""
    heading = next((line for line in path.read_text(encoding="utf-8").split("\n") if line.startswith("# ")), None)
    return heading[2:].split(":")[0].strip() if heading else path.stem


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Fill the nav's generated sections (Tutorials, Examples, API reference), and list every other
    top-level page of docs/ (docs/performance.md, say) after the last hand-listed page."""
    nav = config.nav or []
    listed = {value for item in nav if isinstance(item, dict) for value in item.values() if isinstance(value, str)}
    extra = [{page_title(path): path.name} for path in sorted((ROOT / "docs").glob("*.md")) if path.name not in listed]
    for position, item in enumerate(list(nav)):
        if not isinstance(item, dict):
            continue
        if "Tutorials" in item:
            item["Tutorials"] = [{tutorial_title(path): f"tutorials/{path.stem}.md"} for path in notebooks()]
            nav[position:position] = extra
        if "Examples" in item:
            item["Examples"] = [{example_title(path): f"examples/{path.stem}.md"} for path in example_scripts()]
        if "API reference" in item:
            item["API reference"] = [{name: f"api/{name}.md"} for name in api_packages()]
    return config


def _relink(match: re.Match) -> str:
    image, text, target = match.groups()
    if re.match(r"[a-z]+:|#", target):
        return match.group()
    if target.startswith("docs/"):
        return f"{image}[{text}]({target[len('docs/'):]})"
    return f"`{target}`" if text.strip("`") == target else f"{text} (`{target}`)"


def home_page() -> str:
    """README.md with its links made relative to docs/."""
    return LINK.sub(_relink, (ROOT / "README.md").read_text(encoding="utf-8"))


def example_page(path: Path) -> str:
    """An example's page: its docstring as the text, its figures, its source."""
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source)) or ""
    summary, _, rest = docstring.partition("\n")
    figures = sorted((ROOT / "docs" / "figures").glob(f"{path.stem}*.png"))
    lines = [f"# {example_title(path)}", "", f"`examples/{path.name}`: {summary}", "", rest.strip("\n"), ""]
    lines += [f"![{figure.stem}](../figures/{figure.name})\n" for figure in figures]
    code = "\n".join(f"    {line}".rstrip() for line in ["```python", *source.rstrip().split("\n"), "```"])
    lines += [f'??? example "Source: examples/{path.name}"', "", code, ""]
    return "\n".join(lines)


def tutorial_page(path: Path) -> str:
    """A notebook's page: the markdown cells as they are, the code cells as Python blocks."""
    cells = percent_cells(path.read_text(encoding="utf-8"))
    title, _, intro = cells[0][1].partition("\n")
    note = (f"`notebooks/{path.name}` is a jupytext notebook: run it as a script, or open it in Jupyter "
            "(`pip install jupytext notebook`, then `jupytext --to notebook` it or open the .py directly).")
    lines = [title, "", f'!!! note "Run it"\n    {note}', "", intro.strip("\n")]
    for kind, text in cells[1:]:
        lines += ["", text if kind == "markdown" else f"```python\n{text}\n```"]
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the home page, the example, tutorial and API pages and KaTeX's files to the site."""
    missing = [name for name in KATEX_FILES if not (KATEX_DIST / name).is_file()]
    if missing:
        raise PluginError(f"KaTeX is not installed ({KATEX_DIST} lacks {missing}): run npm ci --prefix tools/katex")
    for name in [*KATEX_FILES, *(f"fonts/{font.name}" for font in sorted((KATEX_DIST / "fonts").iterdir()))]:
        files.append(File.generated(config, f"assets/katex/{name}", abs_src_path=str(KATEX_DIST / name)))
    files.append(File.generated(config, "index.md", content=home_page()))
    for path in example_scripts():
        files.append(File.generated(config, f"examples/{path.stem}.md", content=example_page(path)))
    for path in notebooks():
        files.append(File.generated(config, f"tutorials/{path.stem}.md", content=tutorial_page(path)))
    for name in api_packages():
        page = f"# {name}\n\n::: {name}\n"
        files.append(File.generated(config, f"api/{name}.md", content=page))
    return files


SPHINX_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|obj|exc):(?=<code>)")
LITERAL_MARKER = re.compile(r"::(?=</p>)")


def on_page_content(html: str, page, config: MkDocsConfig, files: Files) -> str:
    """The docstrings' reStructuredText leftovers read as plain text on the site: a role
    (:func:`name`) as the code alone, the `::` before a literal block as one colon."""
    return LITERAL_MARKER.sub(":", SPHINX_ROLE.sub("", html))

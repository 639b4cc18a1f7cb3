"""Find every `$...$` and `$$...$$` math span of a Markdown file, as the documentation site does.

The rules are those of pymdownx.arithmatex (the site's math extension, "smart dollars"), so the
spans found here are the equations the site renders:

- fenced code blocks (``` or ~~~) and code spans (a run of backticks up to the next run of the
  same length) hold no math;
- `$$...$$` is display math when it is a block of its own (blank lines around it, possibly
  indented inside a list item); `$$` anywhere else is an error here (arithmatex would render
  it as inline math between stray dollars);
- `$...$` is inline math when the opening `$` is followed by, and the closing `$` preceded by, a
  non-space character; a backslash escapes a dollar (`\\$` is a literal dollar sign);
- a dollar sign that opens no span is an error here (write `\\$` for a literal one), so that a
  typo cannot silently turn an equation into prose.

`find_spans(text)` returns the spans and the problems; `control_characters(text)` lists the
control characters (anything below U+0020 but the newline, and U+007F) with their line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# pymdownx.arithmatex's RE_SMART_DOLLAR_INLINE: group 1 escaped backslashes, group 3 the math.
INLINE = re.compile(r"(?:(?<!\\)((?:\\{2})+)(?=\$)|(?<!\\)(\$)(?!\s)((?:\\.|[^\\$\x02\x03])+?)(?<!\s)(?:\$))")
DISPLAY_BLOCK = re.compile(r"(?s)^\$\$((?:\\.|[^\\])+?)\$\$[ ]*$")
FENCE = re.compile(r"^[ ]*(`{3,}|~{3,})")
BACKTICKS = re.compile(r"`+")
UNESCAPED_DOLLAR = re.compile(r"(?<!\\)(?:\\{2})*\$")
DOUBLE_DOLLAR = re.compile(r"(?<!\\)(?:\\{2})*\$\$")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Span:
    """One equation: its TeX source, display or inline, and the line it starts on (1-based)."""

    tex: str
    display: bool
    line: int


def control_characters(text: str) -> list[tuple[int, str]]:
    """(line, repr of the character) for every control character but the newline."""
    return [(text.count("\n", 0, m.start()) + 1, repr(m.group())) for m in CONTROL.finditer(text)]


def _blank_fences(lines: list[str]) -> list[str]:
    """The lines with every fenced code block (fences included) blanked, so that line numbers stay."""
    out, fence = [], None
    for line in lines:
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            out.append("")
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not line.strip(
                " `~"
            ):
                fence = None
            out.append("")
        else:
            out.append(line)
    return out


def _mask_code_spans(text: str) -> str:
    """Code spans replaced by \\x02...\\x03 of the same length (the math pattern stops at them)."""
    out, pos = [], 0
    runs = list(BACKTICKS.finditer(text))
    i = 0
    while i < len(runs):
        opening = runs[i]
        closing = next((j for j in range(i + 1, len(runs)) if len(runs[j].group()) == len(opening.group())), None)
        if closing is None:
            i += 1
            continue
        end = runs[closing].end()
        out.append(text[pos : opening.start()])
        out.append("\x02" + "x" * (end - opening.start() - 2) + "\x03")
        pos = end
        i = closing + 1
    out.append(text[pos:])
    return "".join(out)


def _blocks(lines: list[str]) -> list[tuple[int, str]]:
    """(first line number, text) of each run of non-blank lines."""
    blocks, start, current = [], None, []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if start is None:
                start = number
            current.append(line)
        elif start is not None:
            blocks.append((start, "\n".join(current)))
            start, current = None, []
    if start is not None:
        blocks.append((start, "\n".join(current)))
    return blocks


def find_spans(text: str) -> tuple[list[Span], list[str]]:
    """Every math span of a Markdown text, in order, and a list of problems (line: message)."""
    spans, problems = [], []
    for first_line, block in _blocks(_blank_fences(text.split("\n"))):
        dedented = "\n".join(line.strip() for line in block.split("\n"))
        bare = re.sub(r"^(?:[-*+]|\d+\.)[ ]+", "", dedented)  # a list item's marker
        display = DISPLAY_BLOCK.match(bare)
        if display:
            spans.append(Span(display.group(1), True, first_line))
            continue
        masked = _mask_code_spans(block)
        for match in DOUBLE_DOLLAR.finditer(masked):
            line = first_line + masked.count("\n", 0, match.start())
            problems.append(f"line {line}: $$ inside a paragraph: display math must be a block of its own")
        masked = DOUBLE_DOLLAR.sub(lambda match: match.group().replace("$", " "), masked)
        leftover, pos = [], 0
        for match in INLINE.finditer(masked):
            if match.group(3) is not None:
                spans.append(Span(match.group(3), False, first_line + masked.count("\n", 0, match.start())))
            leftover.append(masked[pos : match.start()] + " " * (match.end() - match.start()))
            pos = match.end()
        leftover.append(masked[pos:])
        rest = "".join(leftover)
        for match in UNESCAPED_DOLLAR.finditer(rest):
            line = first_line + rest.count("\n", 0, match.start())
            problems.append(f"line {line}: a $ that opens no math span (write \\$ for a dollar sign)")
    return spans, problems


def spans_of_file(path: Path) -> tuple[list[Span], list[str]]:
    """find_spans() of a file, read as UTF-8 with its line endings kept (a \\r is a problem)."""
    with open(path, encoding="utf-8", newline="") as file:
        return find_spans(file.read())


def percent_cells(text: str) -> list[tuple[str, str]]:
    """The cells of a jupytext percent-format script, as (kind, text): kind "markdown" (the text
    without its comment marks) or "code". The YAML header and text before the first cell are dropped."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.split("\n"):
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            kind, lines = cells[-1]
            lines.append(re.sub(r"^# ?", "", line) if kind == "markdown" else line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def notebook_markdown(text: str) -> str:
    """The markdown cells of a percent-format script, one block each: what Jupyter renders as text."""
    return "\n\n".join(cell for kind, cell in percent_cells(text) if kind == "markdown")

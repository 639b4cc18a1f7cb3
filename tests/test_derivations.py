"""docs/derivations.md and the code agree: names, sections, and the lines it quotes.

How the document is read:
- Code is whatever sits in backticks or in fenced code blocks; math is never read.
- A function reference is a name written as a call, ``name(...)`` or ``name()``, or a lone
  span holding a class name (``Embedding``), a ``Class.method``, or a name ending in
  ``_forward`` / ``_backward``. Calls on NumPy, torch and Python builtins, and methods
  called on a variable (``x.reshape(...)``), are not library references.
- A fenced block whose first line is ``# NAME in PATH`` quotes the function NAME of the
  file PATH: each of its lines must occur in that function's source.

Backward functions are discovered by walking the package, so functions that other
branches add are held to the same rules once they are merged.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import keyword
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import gradcheck
import numpy_attention

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivations.md"
REQUIRED_SECTIONS = [
    "Softmax",
    "Masked softmax and fully masked rows",
    "Scaled dot-product attention",
    "Dropout",
    "Tiled attention: online softmax forward and tiled backward",
    "Linear layer",
    "Multi-head attention",
    "Grouped-query attention",
    "add_bias_kv and add_zero_attn",
    "Embedding",
    "Cross-entropy loss",
    "Adam",
    "RoPE",
    "RMSNorm and QK-norm",
    "Soft-capping",
    "ALiBi",
    "Sliding window and causal masks as a predicate",
    "Attention sinks",
    "Layer normalization",
    "GELU",
    "AdamW and gradient clipping",
    "GPT: residual blocks and the tied head",
    "SwiGLU",
    "The modern attention layer",
]
# Prefixes under which a dotted name is somebody else's: NumPy, torch, the standard library.
FOREIGN_PREFIXES = {"np", "numpy", "torch", "math", "matplotlib", "plt", "self"}
# Prefixes that spell the library's own namespaces.
LIBRARY_PREFIXES = {"numpy_attention", "na", "functional", "F", "gradcheck", "optim"}
SECTION_POINTER = re.compile(r'derivations\.md,?\s+section\s+"([^"]+)"')
QUOTE_HEADER = re.compile(r"#\s*([A-Za-z_][\w.]*)\s+in\s+(\S+\.py)\s*$")


def library_modules():
    """Every module of numpy_attention and gradcheck, imported."""
    modules = []
    for package in (numpy_attention, gradcheck):
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] != "__main__":  # importing a __main__ would run it
                modules.append(importlib.import_module(info.name))
    return modules


def defined_here(module):
    """(name, object) for each function and class the module itself defines."""
    for name, obj in vars(module).items():
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module.__name__:
            yield name, obj


def library_names() -> set[str]:
    """Every function and class name of the library, and ``Class.attribute`` for each class."""
    names = set()
    for module in library_modules():
        for name, obj in defined_here(module):
            names.add(name)
            if inspect.isclass(obj):
                names.update(f"{name}.{attribute}" for attribute in dir(obj) if not attribute.startswith("__"))
    return names


def backward_functions():
    """Every public ``*_backward`` function defined anywhere in numpy_attention."""
    found = {}
    for module in library_modules():
        if module.__name__.split(".")[0] != "numpy_attention":
            continue
        for name, obj in defined_here(module):
            if inspect.isfunction(obj) and name.endswith("_backward") and not name.startswith("_"):
                found[f"{module.__name__}.{name}"] = obj
    return found


def section_pointers(docstring: str) -> list[str]:
    """The section names a docstring points to; a name may wrap over lines."""
    return [" ".join(pointer.split()) for pointer in SECTION_POINTER.findall(docstring)]


def document() -> str:
    return DOC.read_text(encoding="utf-8")


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks, then the inline code spans of the rest."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def notation_variables(text: str) -> set[str]:
    """The variable names of the Conventions table (its last column), with their gradients and tiles.

    ``S`` gives ``S``, ``dS``, ``S_ij`` and ``dS_ij``: the textbook pairs' variables, never library names.
    """
    conventions = re.search(r"^## Conventions\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    names = set()
    if conventions is None:
        return names
    for row in re.findall(r"^\|(.*)\|\s*$", conventions.group(1), flags=re.M):
        names.update(name for name in re.findall(r"`([A-Za-z]\w*)`", row.split("|")[-1]) if len(name) <= 2)
    return {form for name in names for form in (name, f"d{name}", f"{name}_ij", f"d{name}_ij")}


def referenced_names(text: str) -> set[str]:
    """The names the document uses as library functions or classes (see the module docstring)."""
    variables = notation_variables(text)
    names = set()
    for code in code_blocks(text):
        for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(", code):
            names.add(name)
        lone = re.fullmatch(r"\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?\s*", code)
        if lone:
            name = lone.group(1)
            last = name.split(".")[-1]
            if name[0].isupper() or last.endswith(("_forward", "_backward")):
                names.add(name)
    return {name for name in names if name.split(".")[0] not in variables and is_library_reference(name)}


def is_library_reference(name: str) -> bool:
    parts = name.split(".")
    if parts[0] in FOREIGN_PREFIXES or name in keyword.kwlist or name in {"True", "False", "None"}:
        return False
    if len(parts) == 1:
        return not hasattr(builtins, name)
    # Dotted: a library namespace or a class; a lowercase head is a variable (x.reshape).
    return parts[0] in LIBRARY_PREFIXES or parts[0][0].isupper()


def strip_library_prefix(name: str) -> str:
    parts = name.split(".")
    while len(parts) > 1 and parts[0] in LIBRARY_PREFIXES:
        parts = parts[1:]
    return ".".join(parts)


def headings(text: str) -> list[str]:
    return re.findall(r"^##\s+(.+?)\s*$", text, flags=re.M)


def test_document_has_every_required_section():
    found = headings(document())
    missing = [section for section in REQUIRED_SECTIONS if section not in found]
    assert not missing, f"docs/derivations.md lacks the sections {missing}"
    assert len(found) == len(set(found)), "a section heading appears twice"


def test_every_backward_function_is_named_in_the_document():
    referenced = {strip_library_prefix(name) for name in referenced_names(document())}
    backwards = backward_functions()
    assert {"softmax_backward", "linear_backward", "attention_backward"} <= {
        qualified.rsplit(".", 1)[1] for qualified in backwards
    }, "the package walk found too few backward functions"
    missing = sorted(q for q in backwards if q.rsplit(".", 1)[1] not in referenced)
    assert not missing, f"backward functions not named (as `name()`) in docs/derivations.md: {missing}"


def test_the_notation_table_names_the_textbook_variables():
    variables = notation_variables(document())
    assert {"S", "P", "Z", "D", "M", "dS", "dP", "S_ij", "m", "l"} <= variables
    assert "attention_backward" not in variables and "softmax" not in variables


def test_every_function_the_document_names_exists():
    known = library_names()
    referenced = referenced_names(document())
    assert "softmax_grad" in referenced and "Adam.step" in referenced, "the name collection missed names"
    unknown = sorted(name for name in referenced if strip_library_prefix(name) not in known)
    assert not unknown, f"docs/derivations.md names functions the library does not define: {unknown}"


def test_every_backward_docstring_carries_a_formula_and_points_to_an_existing_section():
    sections = set(headings(document()))
    problems = []
    for qualified, function in backward_functions().items():
        doc = inspect.getdoc(function) or ""
        pointers = section_pointers(doc)
        if not pointers:
            problems.append(f"{qualified}: no 'See docs/derivations.md, section \"...\"'")
        problems += [f"{qualified}: no section {p!r}" for p in pointers if p not in sections]
        if not re.search(r"^\s*d\w*(\[[^\]]*\])?\s*\+?=", doc, flags=re.M):
            problems.append(f"{qualified}: no formula line such as 'dx = ...' in the docstring")
    assert not problems, "\n".join(problems)


def test_every_section_pointer_in_the_library_exists():
    sections = set(headings(document()))
    dangling = []
    for module in library_modules():
        sources = [module] + [obj for _, obj in defined_here(module)]
        for obj in sources:
            for pointer in section_pointers(inspect.getdoc(obj) or ""):
                if pointer not in sections:
                    dangling.append(f"{getattr(obj, '__qualname__', obj.__name__)} -> {pointer!r}")
    assert not dangling, f"docstrings point to sections docs/derivations.md lacks: {dangling}"


def quoted_blocks(text: str):
    """(function name, file, quoted lines) for each fenced block headed ``# NAME in PATH``."""
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        first, *lines = block.splitlines()
        header = QUOTE_HEADER.fullmatch(first.strip())
        if header:
            yield header.group(1), header.group(2), [line.strip() for line in lines if line.strip()]


def squeeze(code: str) -> str:
    return re.sub(r"\s+", " ", code)


@pytest.mark.parametrize("name, path, lines", list(quoted_blocks(document())), ids=lambda x: str(x)[:40])
def test_quoted_code_is_the_code(name, path, lines):
    module_name = path.removesuffix(".py").replace("/", ".")
    target = importlib.import_module(module_name)
    for part in name.split("."):
        target = getattr(target, part)
    source = squeeze(inspect.getsource(target))
    stale = [line for line in lines if squeeze(line) not in source]
    assert not stale, f"docs/derivations.md quotes lines that {name} in {path} no longer has: {stale}"


def test_document_quotes_code_for_every_backward_section():
    quoted = {name for name, _, _ in quoted_blocks(document())}
    assert {"softmax_grad", "attention_backward", "linear_backward", "embedding_backward",
            "cross_entropy_backward", "Adam.step"} <= quoted


def test_math_delimiters_are_balanced():
    text = re.sub(r"^```[^\n]*\n.*?^```", "", document(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]+`", "", text)
    assert text.count("$$") % 2 == 0, "an unclosed $$ display block"
    for line in text.replace("$$", "").splitlines():
        assert line.count("$") % 2 == 0, f"unbalanced inline $ in: {line!r}"


def test_name_collection_tells_library_references_from_other_code():
    text = (
        "Use `bogus_backward()` and `Embedding`, then `np.exp(x)`, `x.reshape(2)`, `len(x)`,\n"
        "`padding_idx`, `F.attention_forward` and `Module.zero_grad`.\n"
        "```python\nout = made_up_helper(x) @ weight.T\n```\n$f(x) = \\operatorname{rowsum}(x)$\n"
    )
    assert referenced_names(text) == {
        "bogus_backward", "Embedding", "made_up_helper", "F.attention_forward", "Module.zero_grad"
    }
    assert strip_library_prefix("F.attention_forward") == "attention_forward"


def test_section_pointers_may_wrap_over_lines():
    docstring = 'See docs/derivations.md, section "Tiled attention:\n    online softmax forward".'
    assert section_pointers(docstring) == ["Tiled attention: online softmax forward"]


def test_key_bias_gets_no_gradient_unless_keys_are_appended(rng):
    """The document's claim in "add_bias_kv and add_zero_attn": softmax ignores a per-row shift."""
    x = rng.standard_normal((3, 5, 8))
    for add_zero_attn, expect_zero in ((False, True), (True, False)):
        attention = numpy_attention.MultiHeadAttention(8, 2, batch_first=True, add_zero_attn=add_zero_attn, rng=0)
        out, _ = attention(x)
        attention.backward(rng.standard_normal(out.shape))
        key_bias, query_bias = attention.grads["k_proj.bias"], attention.grads["q_proj.bias"]
        assert (np.abs(key_bias).max() < 1e-12 * np.abs(query_bias).max()) == expect_zero

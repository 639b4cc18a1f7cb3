"""The package boundaries show the architecture: the textbook stands alone, the kernels schedule it.

These tests read the source with ``ast``: what a module imports, how long the
textbook bodies are, and that no scheduling (threads, tiles, buffers) leaks into
``numpy_attention.functional``.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import numpy_attention
from numpy_attention import functional

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONAL = ROOT / "numpy_attention" / "functional"
GRADCHECK = ROOT / "gradcheck"
# The scheduling vocabulary of the kernels: none of it belongs in a textbook pair.
SCHEDULING = {"threading", "concurrent", "concurrent.futures", "threadpoolctl", "kernels", "schedule", "buffers"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute or relative (``..kernels`` gives ``kernels``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


def code_lines(function) -> int:
    """Lines of a function's body that hold code: no docstring, no comment, no blank line."""
    source = inspect.getsource(inspect.unwrap(function))
    tree = ast.parse(source.lstrip())
    body = tree.body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    lines = source.lstrip().splitlines()[body[0].lineno - 1:]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("path", sorted(FUNCTIONAL.glob("*.py")), ids=lambda p: p.name)
def test_the_textbook_imports_no_scheduling(path):
    parts = {part for name in imported_modules(path) for part in name.split(".")}
    assert not parts & SCHEDULING, f"{path.name} imports {parts & SCHEDULING}"


@pytest.mark.parametrize("function, limit", [
    (functional.attention_forward, 25), (functional.attention_backward, 25),
    (functional.flash_attention_forward, 30), (functional.flash_attention_backward, 30),
    (functional.softmax.softmax, 25), (functional.linear_backward, 25),
], ids=lambda x: getattr(x, "__name__", str(x)))
def test_textbook_bodies_are_short_and_flat(function, limit):
    assert code_lines(function) <= limit
    nested = [node.name for node in ast.walk(ast.parse(inspect.getsource(inspect.unwrap(function)).lstrip()))
              if isinstance(node, (ast.FunctionDef, ast.Lambda, ast.ClassDef)) and node is not None][1:]
    assert not nested, f"nested functions in {function.__name__}: {nested}"


def test_gradcheck_core_imports_nothing_private_of_numpy_attention():
    for path in sorted(GRADCHECK.glob("*.py")):
        for name in imported_modules(path):
            if name.startswith("numpy_attention"):
                assert not any(part.startswith("_") for part in name.split(".")), f"{path.name} imports {name}"


def test_the_registry_is_its_own_module_and_names_every_pair():
    from numpy_attention import attention_impls, kernels, layers

    assert not hasattr(layers, "ATTENTION_IMPLS") or layers.ATTENTION_IMPLS is attention_impls.ATTENTION_IMPLS
    assert attention_impls.ATTENTION_IMPLS == {
        "dense": (kernels.attention_forward, kernels.attention_backward),
        "flash": (kernels.flash_attention_forward, kernels.flash_attention_backward),
        "textbook": (functional.attention_forward, functional.attention_backward),
        "textbook-flash": (functional.flash_attention_forward, functional.flash_attention_backward),
    }
    assert numpy_attention.scaled_dot_product_attention is kernels.scaled_dot_product_attention


def test_test_files_import_helpers_from_tests_helpers_only():
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for name in imported_modules(path):
            head = name.split(".")[0]
            assert head != "conftest" and not head.startswith("test_"), f"{path.name} imports {name}"

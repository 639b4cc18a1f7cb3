"""The README's Python snippets run as written (in order, sharing one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["report"].passed


def test_readme_check_recipe_runs_as_written_and_catches_a_wrong_backward(capsys):
    """The "check your own layer" recipe runs on its own, in a fresh namespace, and prints a passing
    table; with the row sum dropped from dw, the same lines fail."""
    recipe = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "my_forward" in b)
    namespace: dict = {}
    exec(compile(recipe, str(README), "exec"), namespace)
    assert namespace["report"].passed and "PASSED" in capsys.readouterr().out
    broken = recipe.replace("(dout * x).sum(axis=0)", "(dout * x)[0]")
    assert broken != recipe
    try:
        exec(compile(broken, str(README), "exec"), {})
    except AssertionError:
        pass
    else:
        raise AssertionError("the recipe passed a dw without the sum over rows")


def section(title: str) -> str:
    """The README text from the heading ``title`` to the next heading of the same level."""
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_readme_states_each_mask_convention_where_its_api_is_introduced():
    """SDPA / attention_forward: boolean True = may attend; MultiHeadAttention: True = NOT allowed."""
    for title, convention, call in (
        ("The API in a few lines", "True = may attend", "attention_forward(q, k, v, attn_mask="),
        ("Multi-head attention", "True = NOT allowed", "mha(x, attn_mask="),
    ):
        text = section(title)
        assert convention in text, title
        assert "float" in text and "added" in text, title
        snippet = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if call in b)
        assert len(snippet.strip().splitlines()) == 2 and convention in snippet, snippet


def test_readme_mask_examples_mean_what_they_say():
    """Both two-line examples build the causal mask, each in its own convention."""
    import numpy as np

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {}
    seen = set()
    for block in blocks:
        if "my_forward" in block:
            continue
        exec(compile(block, str(README), "exec"), namespace)
        seen |= {name for name in ("may_attend", "blocked") if name in block}
        if "may_attend" in block:
            causal, _ = namespace["attention_forward"](namespace["q"], namespace["k"], namespace["v"], is_causal=True)
            np.testing.assert_array_equal(namespace["out"], causal)
        if "blocked" in block:
            mha, x = namespace["mha"], namespace["x"]
            mha.eval()
            np.testing.assert_array_equal(mha(x, attn_mask=namespace["blocked"])[0], mha(x, is_causal=True)[0])
    assert seen == {"may_attend", "blocked"}


def test_readme_writes_a_module_with_the_public_api_only():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    module = next(b for b in blocks if "(na.Module)" in b)
    assert "save_for_backward" in module and "saved_cache()" in module and "accumulate(" in module
    assert not re.search(r"\._[a-z]", README.read_text())  # no private attribute anywhere in the README

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
        if "my_forward" in block:  # the template for the reader's own layer: run with a real layer below
            continue
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["dx"].shape == namespace["x"].shape


def test_readme_check_template_runs_with_a_real_layer():
    """The five-line template, with a scaled-product layer standing in for the reader's."""
    import numpy as np

    def my_forward(x, w):
        return x * w, (x, w)

    def my_backward(dout, cache):
        x, w = cache
        return dout * w, (dout * x).sum(axis=0)

    template = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if "my_forward" in b)
    namespace = {"my_forward": my_forward, "my_backward": my_backward, "np": np,
                 "rng": np.random.default_rng(0)}
    exec(compile(template.replace("print(report)", ""), str(README), "exec"), namespace)
    assert namespace["report"].passed

"""compare_with_torch and friends: agreement to 1e-10 when right, the element named when wrong,
and a clear message (and no torch import) when torch is missing."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers.example_runner import ROOT
from helpers.numerics import random_like, require_torch

import gradcheck
import numpy_attention as na
from gradcheck import torch_ops
from gradcheck.reference import compare_module_with_torch, compare_with_reference, compare_with_torch
from numpy_attention import functional as F


def qkv(shapes=((2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)), seed=0):
    rng = np.random.default_rng(seed)
    return tuple(random_like(rng, shape) for shape in shapes)


def test_attention_agrees_with_torch_to_1e_10():
    require_torch()
    mask = np.random.default_rng(1).random((3, 5)) > 0.3
    mask[:, 0] = True
    forward = functools.partial(F.attention_forward, attn_mask=mask, scale=0.4)
    torch_forward = functools.partial(torch_ops.attention, attn_mask=mask, scale=0.4)
    report = compare_with_torch(forward, F.attention_backward, torch_forward, qkv())
    assert report.passed, report
    assert [row.name for row in report.rows] == ["output", "dq", "dk", "dv"]
    assert report.labels == ("numpy", "torch") and report.rtol == 1e-10
    assert all(row.max_rel_error < 1e-12 for row in report.rows)


def test_torch_finds_a_forward_bug_that_finite_differences_cannot():
    require_torch()
    wrong_scale = functools.partial(F.attention_forward, scale=1.0)  # the forward ignores the usual 1/sqrt(E)
    assert gradcheck.check(wrong_scale, F.attention_backward, qkv()).passed
    report = compare_with_torch(wrong_scale, F.attention_backward, torch_ops.attention, qkv())
    assert not report.passed
    assert report.rows[0].name == "output" and report.rows[0].status == "FAIL"


def test_torch_finds_a_planted_gradient_error_at_its_element():
    require_torch()

    def wrong(dout, cache):
        dq, dk, dv = F.attention_backward(dout, cache)
        dv = dv.copy()
        dv[1, 0, 2, 1] += 1e-6 * abs(dv[1, 0, 2, 1])  # 1e-6 relative: far below what finite differences resolve
        return dq, dk, dv

    report = compare_with_torch(F.attention_forward, wrong, torch_ops.attention, qkv())
    assert [row.status for row in report.rows] == ["ok", "ok", "ok", "FAIL"]
    assert report.rows[3].worst_index == (1, 0, 2, 1) and report.rows[3].num_failed == 1


def test_module_agrees_with_torch_and_is_left_unchanged(rng):
    require_torch()
    layer = na.Linear(4, 3, rng=np.random.default_rng(0))
    before = layer.state_dict()
    x = random_like(rng, (2, 5, 4))
    report = compare_module_with_torch(layer, lambda p, x: torch_ops.linear(x, p["weight"], p["bias"]), x)
    assert report.passed, report
    assert [row.name for row in report.rows] == ["output", "dx", "dweight", "dbias"]
    assert all(np.array_equal(layer.params[k], v) for k, v in before.items())
    assert not any(g.any() for g in layer.grads.values())

    report = compare_module_with_torch(layer, lambda p, x: torch_ops.linear(x, p["weight"], 1.001 * p["bias"]), x)
    assert [row.status for row in report.rows] == ["FAIL", "ok", "ok", "FAIL"]


def test_float32_is_compared_with_float32_tolerances():
    require_torch()
    inputs = tuple(x.astype(np.float32) for x in qkv())
    report = compare_with_torch(F.attention_forward, F.attention_backward, torch_ops.attention, inputs)
    assert report.passed and report.dtype == "float32" and report.rtol == 1e-4


def test_torch_output_of_the_wrong_shape_is_a_clear_error():
    require_torch()
    with pytest.raises(ValueError, match=r"torch_forward returned shape \(2, 4, 3\); ours is \(2, 4, 3, 3\)"):
        compare_with_torch(F.attention_forward, F.attention_backward, lambda q, k, v: q[..., :3].sum(-1), qkv())


def test_numpy_reference_compares_outputs():
    def reference(q, k, v):
        group = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, group, axis=-3), np.repeat(v, group, axis=-3)
        scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        return weights / weights.sum(-1, keepdims=True) @ v

    assert compare_with_reference(F.attention_forward, reference, qkv()).passed
    report = compare_with_reference(functools.partial(F.attention_forward, scale=1.0), reference, qkv())
    assert not report.passed and [row.name for row in report.rows] == ["output"]


def test_without_torch_the_message_says_what_to_install(monkeypatch):
    from numpy_attention.optional import TORCH_HINT

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=re.escape(TORCH_HINT)):
        compare_with_torch(F.attention_forward, F.attention_backward, torch_ops.attention, qkv())


def test_importing_gradcheck_never_imports_torch():
    code = ("import sys, gradcheck, gradcheck.suite, gradcheck.bugs, gradcheck.torch_ops, gradcheck.__main__; "
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'matplotlib' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr

"""What a new user reads: a closed pipe, a dtype mismatch, a forward that differs, the rel err column."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.example_runner import ROOT
from helpers.numerics import random_like, require_torch

import numpy_attention as na
from gradcheck import compare_with_reference, compare_with_torch, torch_ops
from gradcheck.check import check
from numpy_attention import functional as F


def qkv(seed=0):
    rng = np.random.default_rng(seed)
    return tuple(random_like(rng, shape) for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 3)))


def test_listing_into_a_pipe_closed_early_ends_quietly():
    """``python -m gradcheck --list | head -1``: the reader is gone before the listing is written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "gradcheck", "--list"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader goes away at once, as head does after its line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) in (0, 1)  # 1: Python's convention for a closed pipe
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr


def test_a_float64_module_given_float32_says_how_to_get_a_float32_module():
    x = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"query must have dtype float64; got dtype float32\. .*"
                                        r"MultiHeadAttention\(\.\.\., dtype=np\.float32\)"):
        na.MultiHeadAttention(4, 2)(x)
    with pytest.raises(TypeError, match=r"x must have dtype float64; got dtype float32\. .*"
                                        r"Linear\(\.\.\., dtype=np\.float32\).*\.astype\(np\.float64\)"):
        na.Linear(4, 2)(x)
    assert na.MultiHeadAttention(4, 2, dtype=np.float32)(x)[0].dtype == np.float32  # what the message says works


def wrong_scale_forward():
    return functools.partial(F.attention_forward, scale=1.0)  # the forward differs; its backward is consistent


def test_a_reference_comparison_names_the_output_when_the_forward_differs():
    def reference(q, k, v):
        return F.attention_forward(q, k, v)[0]

    report = compare_with_reference(wrong_scale_forward(), reference, qkv())
    assert report.worst().name == "output"
    assert "'output' is off" in report.summary() and "the forward differs" in report.summary()


def test_compare_with_torch_names_the_output_not_dq_when_the_forward_differs():
    require_torch()
    report = compare_with_torch(wrong_scale_forward(), F.attention_backward, torch_ops.attention, qkv())
    assert not report.passed and {"output", "dq"} <= {row.name for row in report.failures}
    assert report.worst().name == "output"
    assert report.summary().startswith("FAILED") and "'output' is off" in report.summary()


def test_the_table_says_what_max_rel_err_is_relative_to():
    text = str(check(F.softmax_forward, F.softmax_backward, (random_like(np.random.default_rng(0), (3, 4)),)))
    assert "max rel err = max |analytic - numeric| / the largest |value| in the tensor" in text

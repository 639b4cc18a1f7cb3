"""The bug zoo: every bug is caught by the check it belongs to, every correct twin passes."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers.attention_cases import CASES
from helpers.example_runner import assert_png, run_example
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import bugs
from numpy_attention.functional import attention_backward, attention_forward

BACKWARD_BUGS = [bug for bug in bugs.BUGS if bug.caught_by == bugs.FINITE_DIFFERENCES]
FORWARD_BUGS = [bug for bug in bugs.BUGS if bug.caught_by == bugs.REFERENCE]
ids = lambda bug: bug.name  # noqa: E731

# Which gradients each backward bug gets wrong: the report must point there and nowhere else.
WRONG_TENSORS = {
    "softmax-missing-rowsum": ["x"],
    "attention-missing-scale": ["q", "k"],
    "attention-dk-transpose-L=S": ["k"],
    "attention-dropout-forgotten": ["q", "k"],
    "linear-bias-not-summed": ["bias"],
    "gqa-kv-grad-one-head": ["k", "v"],
    "causal-leak": ["q", "k"],
    "sink-gradient-missing": ["sinks"],
}


def test_the_zoo_has_at_least_eight_distinct_bugs_of_both_kinds():
    assert len(bugs.BUGS) >= 8 and len({bug.name for bug in bugs.BUGS}) == len(bugs.BUGS)
    assert len(BACKWARD_BUGS) >= 8 and len(FORWARD_BUGS) >= 3


@pytest.mark.parametrize("fast", [False, True], ids=["exhaustive", "fast"])
@pytest.mark.parametrize("bug", BACKWARD_BUGS, ids=ids)
def test_finite_differences_catch_every_backward_bug(bug, fast):
    detection = bugs.detect(bug, fast=fast)
    assert detection.caught, detection.how
    if bug.name == "attention-dk-transpose-L!=S":
        assert detection.report is None and "shapes" not in bug.name and "mismatch" in detection.how
        return
    failing = [row.name for row in detection.report.rows if row.status == "FAIL"]
    assert failing == WRONG_TENSORS[bug.name]
    assert not bugs.run_check(bug.right(), bug.caught_by, fast=fast).caught


@pytest.mark.parametrize("bug", FORWARD_BUGS, ids=ids)
def test_forward_bugs_pass_finite_differences_and_fail_the_numpy_reference(bug):
    blind = bugs.run_check(bug.wrong(), bugs.FINITE_DIFFERENCES, fast=True)
    assert not blind.caught, blind.how  # the backward differentiates the wrong forward faithfully
    detection = bugs.detect(bug, use_torch=False)
    assert detection.caught and detection.report.rows[0].name == "output"
    assert detection.report.labels == ("numpy", "numpy loops")
    assert not bugs.run_check(bug.right(), bug.caught_by, use_torch=False).caught
    assert not bugs.run_check(bug.right(), bugs.FINITE_DIFFERENCES, fast=True).caught


@pytest.mark.parametrize("bug", FORWARD_BUGS, ids=ids)
def test_forward_bugs_fail_against_torch(bug):
    require_torch()
    detection = bugs.detect(bug, use_torch=True)
    assert detection.caught and detection.report.labels == ("numpy", "torch")
    assert detection.report.rows[0].status == "FAIL"
    right = bugs.run_check(bug.right(), bug.caught_by, use_torch=True)
    assert not right.caught, right.how
    # db_k is 0 (softmax ignores a shift shared by all keys): both sides are rounding noise there
    assert all(row.max_rel_error < 1e-12 or row.max_abs_error < 1e-14 for row in right.report.rows)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_copy_planted_with_nothing_is_the_textbook_backward(case):
    q, k, v, options = case.build(seed=4)
    out, cache = attention_forward(q, k, v, **options, rng=np.random.default_rng(0))
    dout = random_like(np.random.default_rng(1), out.shape)
    copy = bugs.planted(attention_backward)
    assert copy is not attention_backward
    for ours, planted in zip(attention_backward(dout, cache), copy(dout, cache)):
        np.testing.assert_array_equal(planted, ours)


@pytest.mark.parametrize("mistake", sorted(bugs.ATTENTION_MISTAKES))
def test_every_mistake_replaces_lines_of_the_textbook_backward_and_says_so(mistake):
    code = [line.strip() for line in inspect.getsource(attention_backward).split("\n")]
    for line, wrong in bugs.ATTENTION_MISTAKES[mistake]:
        assert code.count(line) == 1 and "# WRONG" in wrong and line not in wrong
    with pytest.raises(ValueError, match="no line"):
        bugs.planted(attention_backward, ("no such line", "x = 1  # WRONG"))


def test_the_numpy_loop_reference_is_torch(rng):
    torch = require_torch()
    case = next(bug for bug in bugs.BUGS if bug.name == "mha-heads-layout").right()
    expected = case.torch_forward(*(torch.tensor(x) for x in case.inputs)).numpy()
    assert rel_error(case.numpy_reference(*case.inputs), expected) < 1e-12


def test_bug_zoo_example(tmp_path):
    pytest.importorskip("matplotlib", reason="the example draws with matplotlib: pip install matplotlib")
    stdout = run_example("bug_zoo.py", tmp_path, "--fast", "--no-torch")
    for bug in bugs.BUGS:
        assert f"{bug.name}: {bug.mistake}" in stdout
    assert stdout.count("CAUGHT by") == len(bugs.BUGS) and "MISSED" not in stdout
    assert stdout.count("the correct version: passes") == len(bugs.BUGS)
    assert stdout.count("finite differences alone: passed") == len(FORWARD_BUGS)
    assert "NumPy loop reference" in stdout
    assert stdout.rstrip().endswith("every bug caught, every correct version passes")
    assert_png(tmp_path / "bug_zoo.png")

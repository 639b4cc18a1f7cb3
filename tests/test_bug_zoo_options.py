"""The zoo's bugs of today's attention options: each caught by its own check, and only there."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.numerics import rel_error, require_torch

from gradcheck import bugs

BY_NAME = {bug.name: bug for bug in bugs.BUGS}


def test_the_sink_case_has_a_row_with_no_visible_key():
    assert not bugs.SINK_VISIBLE[0].any() and bugs.SINK_VISIBLE[1:].any(axis=1).all()


def test_a_missing_sink_gradient_fails_finite_differences_on_the_sinks_only():
    bug = BY_NAME["sink-gradient-missing"]
    assert bug.caught_by == bugs.FINITE_DIFFERENCES
    for fast in (False, True):
        detection = bugs.detect(bug, fast=fast)
        assert detection.caught
        assert [row.name for row in detection.report.rows if row.status == "FAIL"] == ["sinks"]
        assert not bugs.run_check(bug.right(), bugs.FINITE_DIFFERENCES, fast=fast).caught


def test_a_missing_sink_gradient_fails_against_torch_on_dsinks_only():
    require_torch()
    bug = BY_NAME["sink-gradient-missing"]
    report = bugs.run_check(bug.wrong(), bugs.REFERENCE, use_torch=True).report
    assert [row.name for row in report.rows if row.status == "FAIL"] == ["dsinks"]
    assert not bugs.run_check(bug.right(), bugs.REFERENCE, use_torch=True).caught


def test_mixed_rope_layouts_pass_finite_differences_and_fail_both_references():
    bug = BY_NAME["rope-layouts-mixed"]
    assert bug.caught_by == bugs.REFERENCE
    assert not bugs.run_check(bug.wrong(), bugs.FINITE_DIFFERENCES).caught  # a valid RoPE, faithfully differentiated
    numpy_loops = bugs.detect(bug, use_torch=False)
    assert numpy_loops.caught and numpy_loops.report.rows[0].name == "output"
    assert numpy_loops.report.rows[0].max_rel_error > 0.1  # not rounding: the wrong function
    assert not bugs.run_check(bug.right(), bugs.REFERENCE, use_torch=False).caught


def test_mixed_rope_layouts_fail_against_torch():
    require_torch()
    bug = BY_NAME["rope-layouts-mixed"]
    report = bugs.detect(bug, use_torch=True).report
    assert report.labels == ("numpy", "torch") and {row.name for row in report.rows if row.status == "FAIL"} == {
        "output", "dx"}
    assert not bugs.run_check(bug.right(), bugs.REFERENCE, use_torch=True).caught


def test_the_rope_loop_reference_is_the_torch_reference():
    torch = require_torch()
    case = BY_NAME["rope-layouts-mixed"].right()
    (x,) = case.inputs
    expected = case.torch_forward(torch.tensor(x)).numpy()
    assert rel_error(case.numpy_reference(x), expected) < 1e-14
    assert rel_error(case.forward(x)[0], expected) < 1e-14
    np.testing.assert_array_equal(case.numpy_reference(x)[..., 0, :], x[..., 0, :])  # position 0: no rotation


FORWARD_OPTION_BUGS = pytest.mark.parametrize("name", ["softcap-after-mask", "window-off-by-one"])


@FORWARD_OPTION_BUGS
def test_option_forward_bugs_pass_finite_differences_and_fail_the_numpy_reference(name):
    bug = BY_NAME[name]
    assert bug.caught_by == bugs.REFERENCE
    for fast in (False, True):  # the backward differentiates the wrong forward faithfully
        assert not bugs.run_check(bug.wrong(), bugs.FINITE_DIFFERENCES, fast=fast).caught
    numpy_loops = bugs.detect(bug, use_torch=False)
    assert numpy_loops.caught and numpy_loops.report.rows[0].name == "output"
    assert numpy_loops.report.rows[0].max_rel_error > 1e-3  # not rounding: the wrong function
    assert not bugs.run_check(bug.right(), bugs.REFERENCE, use_torch=False).caught


@FORWARD_OPTION_BUGS
def test_option_forward_bugs_fail_against_torch(name):
    require_torch()
    bug = BY_NAME[name]
    report = bugs.detect(bug, use_torch=True).report
    assert report.labels == ("numpy", "torch")
    assert {row.name for row in report.rows if row.status == "FAIL"} >= {"output", "dq", "dk", "dv"}
    assert not bugs.run_check(bug.right(), bugs.REFERENCE, use_torch=True).caught


def test_the_loop_reference_of_the_options_is_the_torch_twin():
    torch = require_torch()
    for name in ("softcap-after-mask", "window-off-by-one"):
        case = BY_NAME[name].right()
        expected = case.torch_forward(*(torch.tensor(x) for x in case.inputs)).numpy()
        assert rel_error(case.numpy_reference(*case.inputs), expected) < 1e-14
        assert rel_error(case.forward(*case.inputs)[0], expected) < 1e-14


@pytest.mark.parametrize("name, first_leaking_query", [("softcap-after-mask", 0), ("window-off-by-one", 3)])
def test_the_wrong_forwards_let_a_query_see_a_key_it_must_not(name, first_leaking_query):
    """Softcap after the mask: query 0 sees the last key (the future). Window (2, 0) off by one: query 3 sees key 0."""
    key = 5 if name == "softcap-after-mask" else 0
    for version, leaks in (("wrong", True), ("right", False)):
        case = getattr(BY_NAME[name], version)()
        q, k, v = case.inputs
        moved = v.copy()
        moved[..., key, :] += 10.0
        changed = np.abs(case.forward(q, k, moved)[0] - case.forward(q, k, v)[0]).max(axis=(0, 1, 3)) > 1e-12
        first = int(np.argmax(changed)) if changed.any() else None
        if leaks:
            assert changed[first_leaking_query]
        else:  # only the queries allowed to see the key move: those at or after it, within the window
            allowed = [i for i in range(6) if i >= key and (name != "window-off-by-one" or i - key <= 2)]
            assert np.flatnonzero(changed).tolist() == allowed and first == allowed[0]

"""The zoo's bugs of today's attention options: each caught by its own check, and only there."""

from __future__ import annotations

import numpy as np
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

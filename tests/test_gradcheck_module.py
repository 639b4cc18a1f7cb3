"""check_module checks that backward accumulates, and leaves the module exactly as it found it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.numerics import random_like

import gradcheck
import numpy_attention as na


class Scale(na.Module):
    """y = x * w with a learned w, written with the public Module API only."""

    def __init__(self, features: int, assign: bool = False) -> None:
        super().__init__()
        self.assign = assign
        self.add_param("w", np.linspace(0.5, 1.5, features))

    def forward(self, x):
        self.save_for_backward(x)
        return x * self.params["w"]

    def backward(self, dout):
        x = self.saved_cache()
        dw = (dout * x).reshape(-1, x.shape[-1]).sum(axis=0)
        if self.assign:
            self.grads["w"] = dw  # the bug: assigns instead of adding
        else:
            self.accumulate("w", dw)
        return dout * self.params["w"]


def test_a_module_written_with_save_for_backward_passes_every_row(rng):
    report = gradcheck.check_module(Scale(3), random_like(rng, (4, 3)))
    assert report.passed, report
    assert [(row.name, row.status) for row in report.rows] == [("x", "ok"), ("w", "ok"), ("grads accumulate", "ok")]


def test_a_backward_that_assigns_its_gradient_fails_the_accumulation_row(rng):
    report = gradcheck.check_module(Scale(3, assign=True), random_like(rng, (4, 3)))
    assert not report.passed
    assert [row.name for row in report.failures] == ["grads accumulate"]  # finite differences alone pass it
    row = report.failures[0]
    assert row.num_failed == 3 and np.isclose(row.expected, 2 * row.actual)  # holds one gradient, not two
    assert "module.grads['w'] after two backwards is not twice one backward's" in row.note
    assert "not assign grads[name] = grad" in row.note
    assert "grads accumulate" in report.summary() and "grads accumulate" in str(report)


def test_the_module_is_restored_exactly_even_after_a_backward_that_replaced_its_arrays(rng):
    module = Scale(3, assign=True)
    x = random_like(rng, (4, 3))
    module(x)
    module.accumulate("w", random_like(rng, (3,)))
    params, grads = dict(module.params), dict(module.grads)  # the array objects
    values = {k: v.copy() for k, v in [*params.items(), *(("d" + k, g) for k, g in grads.items())]}
    cache = module.saved_cache()
    gradcheck.check_module(module, x)
    assert module.params == params and all(module.params[k] is params[k] for k in params)
    assert all(module.grads[k] is grads[k] for k in grads) and set(module.grads) == set(grads)
    assert all(np.array_equal(module.params[k], values[k]) for k in params)
    assert all(np.array_equal(module.grads[k], values["d" + k]) for k in grads)
    assert module.saved_cache() is cache


def test_the_training_flag_and_generator_are_restored():
    class SwitchesMode(Scale):
        def forward(self, x):
            self.eval()  # a forward with a side effect on the mode
            return super().forward(x)

    module = SwitchesMode(3)
    module.rng = np.random.default_rng(4)
    state = module.rng.bit_generator.state
    assert module.training
    assert gradcheck.check_module(module, np.random.default_rng(0).standard_normal((2, 3))).passed
    assert module.training is True and module.rng.bit_generator.state == state


def test_multihead_attention_grads_are_the_same_arrays_after_a_check(rng):
    module = na.MultiHeadAttention(4, 2, dropout=0.2, rng=np.random.default_rng(0))
    ids = {k: id(g) for k, g in module.grads.items()}
    report = gradcheck.check_module(module, random_like(rng, (3, 2, 4)), fast=True)
    assert report.passed and report.rows[-1].name == "grads accumulate"
    assert {k: id(g) for k, g in module.grads.items()} == ids
    assert not any(g.any() for g in module.grads.values())


def test_backward_before_forward_names_the_public_way():
    with pytest.raises(ValueError, match=r"Scale.backward\(\) was called before forward\(\)"):
        Scale(3).backward(np.ones((2, 3)))

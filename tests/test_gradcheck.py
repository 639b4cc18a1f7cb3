"""The checker itself: correct pairs pass, planted errors are found where they are, nothing is mutated,
and bad forward/backward results get clear errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error

import gradcheck
import numpy_attention as na
from gradcheck import DEFAULT_TOLERANCES
from numpy_attention import functional as F

QKV = ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3))


def qkv(dtype=np.float64, shapes=QKV, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(random_like(rng, shape, dtype) for shape in shapes)


def planted(backward, tensor: int, index: tuple, factor: float):
    """``backward`` with gradient number ``tensor`` multiplied by ``factor`` at ``index`` (or everywhere)."""
    def wrong(dout, cache):
        result = backward(dout, cache)
        grads = list(result) if isinstance(result, tuple) else [result]
        grad = grads[tensor].copy()
        grad[index] *= factor
        grads[tensor] = grad
        return tuple(grads) if len(grads) > 1 else grads[0]
    return wrong


@pytest.mark.parametrize("options", [
    {}, {"is_causal": True}, {"scale": 0.3}, {"dropout_p": 0.4}, {"attn_mask": np.tri(3, 5, dtype=bool)},
])
def test_correct_attention_passes_with_room_to_spare(options):
    forward = functools.partial(F.attention_forward, **options, rng=np.random.default_rng(1))
    report = gradcheck.check(forward, F.attention_backward, qkv())
    assert report.passed, report
    assert [row.name for row in report.rows] == ["q", "k", "v"]  # names from the forward's signature
    assert all(row.status == "ok" and row.max_rel_error < 1e-7 for row in report.rows), report


def test_correct_softmax_linear_and_modules_pass(rng):
    x, weight, bias = random_like(rng, (2, 3, 4)), random_like(rng, (5, 4)), random_like(rng, (5,))
    assert gradcheck.check(F.softmax_forward, F.softmax_backward, (x,)).passed
    assert gradcheck.check(F.linear_forward, F.linear_backward, (x, weight, bias)).passed
    report = gradcheck.check(F.linear_forward, F.linear_backward, (x, weight))  # dbias None: no third input
    assert report.passed and [row.name for row in report.rows] == ["x", "weight"]
    report = gradcheck.check_module(na.Linear(4, 5, rng=np.random.default_rng(0)), x)
    assert report.passed and [row.name for row in report.rows] == ["x", "weight", "bias", "grads accumulate"]
    report = gradcheck.check_module(na.ScaledDotProductAttention(0.2, rng=np.random.default_rng(2)), *qkv())
    assert report.passed and [row.name for row in report.rows] == ["q", "k", "v"]


@pytest.mark.parametrize("fast", [False, True])
def test_planted_one_percent_error_is_found_at_its_element(fast):
    index = (1, 0, 3, 2)
    report = gradcheck.check(F.attention_forward, planted(F.attention_backward, 1, index, 1.01), qkv(), fast=fast)
    assert not report.passed
    assert [row.status for row in report.rows] == ["ok", "FAIL", "ok"]
    k_row = report.rows[1]
    if fast:  # directions name the tensor, not the element
        assert k_row.worst_index is None and "fast=False" in k_row.note
        return
    assert k_row.worst_index == index and k_row.num_failed == 1 and k_row.num_checked == 80
    out, cache = F.attention_forward(*qkv())
    dout = np.random.default_rng(0).standard_normal(out.shape)  # the check's dout: seed 0
    dk = F.attention_backward(dout, cache)[1]
    assert k_row.actual == pytest.approx(1.01 * dk[index], rel=1e-12)
    assert k_row.expected == pytest.approx(dk[index], rel=1e-6)
    text = str(report)
    assert "FAIL (1/80)" in text and str(index) in text and "'k' is off at (1, 0, 3, 2)" in text


def test_a_gradient_one_tenth_percent_off_fails_the_float64_defaults():
    """0.1 % everywhere: caught by the defaults; torch's default tolerances (rtol=1e-3) would let it pass."""
    wrong = planted(F.attention_backward, 0, ..., 1.001)
    assert not gradcheck.check(F.attention_forward, wrong, qkv()).passed
    assert not gradcheck.check(F.attention_forward, wrong, qkv(), fast=True).passed
    assert gradcheck.check(F.attention_forward, wrong, qkv(), atol=1e-5, rtol=1e-3).passed


def test_float32_uses_float32_tolerances_and_says_so():
    report = gradcheck.check(F.attention_forward, F.attention_backward, qkv(np.float32))
    tolerance = DEFAULT_TOLERANCES[np.dtype(np.float32)]
    assert report.passed, report
    assert (report.dtype, report.eps, report.atol, report.rtol) == ("float32", tolerance.eps, tolerance.atol,
                                                                     tolerance.rtol)
    assert "float64 is the recommended dtype" in str(report)
    assert tolerance.rtol > 10 * DEFAULT_TOLERANCES[np.dtype(np.float64)].rtol
    # a 10 % bug is still caught in float32
    assert not gradcheck.check(F.attention_forward, planted(F.attention_backward, 2, ..., 1.1), qkv(np.float32)).passed
    # one float32 tensor makes the whole check float32
    q, k, v = qkv()
    assert gradcheck.check(F.softmax_forward, F.softmax_backward, (q.astype(np.float32),)).dtype == "float32"
    assert gradcheck.check(F.attention_forward, F.attention_backward, (q, k, v)).dtype == "float64"


def test_a_gradient_of_the_wrong_dtype_fails_its_row():
    def float64_grads(dout, cache):
        return tuple(g.astype(np.float64) for g in F.attention_backward(dout, cache))

    report = gradcheck.check(F.attention_forward, float64_grads, qkv(np.float32))
    assert not report.passed
    assert all("dtype float64" in row.note and "float32" in row.note for row in report.rows)


def test_inputs_are_unchanged_even_read_only_and_after_a_failure():
    inputs = qkv()
    saved = [x.copy() for x in inputs]
    for x in inputs:
        x.flags.writeable = False
    gradcheck.check(F.attention_forward, F.attention_backward, inputs)
    gradcheck.check(F.attention_forward, planted(F.attention_backward, 0, ..., 2.0), inputs, fast=True)
    for x, original in zip(inputs, saved):
        assert np.array_equal(x, original) and not x.flags.writeable


def test_check_module_leaves_the_module_as_it_found_it(rng):
    layer = na.Linear(4, 3, rng=np.random.default_rng(0))
    x = random_like(rng, (2, 4))
    layer(x)
    layer.backward(random_like(rng, (2, 3)))  # some accumulated gradient and a cached forward
    params, grads, cache = layer.state_dict(), {k: g.copy() for k, g in layer.grads.items()}, layer._cache
    arrays = {k: id(v) for k, v in layer.params.items()}
    report = gradcheck.check_module(layer, x)
    assert report.passed
    assert all(np.array_equal(layer.params[k], v) for k, v in params.items())
    assert all(np.array_equal(layer.grads[k], g) for k, g in grads.items())
    assert layer._cache is cache and {k: id(v) for k, v in layer.params.items()} == arrays


def test_dropout_is_replayed_for_partials_closures_and_modules():
    generator = np.random.default_rng(5)
    state = generator.bit_generator.state
    inputs = qkv()
    by_partial = functools.partial(F.attention_forward, dropout_p=0.5, rng=generator)
    by_closure = lambda q, k, v: F.attention_forward(q, k, v, dropout_p=0.5, rng=generator)  # noqa: E731
    assert gradcheck.check(by_partial, F.attention_backward, inputs).passed
    assert gradcheck.check(by_closure, F.attention_backward, inputs, fast=True).passed
    assert generator.bit_generator.state == state  # rewound: the check draws nothing for good

    module = na.ScaledDotProductAttention(dropout=0.5, rng=np.random.default_rng(6))
    module_state = module.rng.bit_generator.state
    assert gradcheck.check_module(module, *inputs).passed
    assert module.rng.bit_generator.state == module_state
    out_after, _ = module(*inputs)
    fresh = na.ScaledDotProductAttention(dropout=0.5, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(out_after, fresh(*inputs)[0])  # the same mask as if never checked


def test_legacy_global_random_state_is_replayed():
    def forward(x):
        keep = np.random.random_sample(x.shape) > 0.5  # noqa: NPY002 - the legacy API, on purpose
        return x * keep, keep

    assert gradcheck.check(forward, lambda dout, keep: dout * keep, (np.random.default_rng(0).normal(size=5),)).passed


def test_unreplayable_randomness_is_an_error_not_a_wrong_verdict():
    def forward(q, k, v):  # a fresh unseeded generator per call: every call a different mask
        return F.attention_forward(q, k, v, dropout_p=0.5, rng=np.random.default_rng())

    with pytest.raises(ValueError, match="not deterministic"):
        gradcheck.check(forward, F.attention_backward, qkv())


def test_integer_and_bool_inputs_are_skipped_and_said_so(rng):
    def forward(x, keep, repeats):
        return x * keep * repeats, (keep, repeats)

    def backward(dout, cache):
        keep, repeats = cache
        return (dout * keep * repeats,)

    x, keep, repeats = random_like(rng, (3, 4)), rng.random((3, 4)) > 0.5, np.arange(4)
    report = gradcheck.check(forward, backward, (x, keep, repeats))
    assert report.passed
    assert [row.status for row in report.rows] == ["ok", "skipped", "skipped"]
    assert "bool input is not differentiable" in report.rows[1].note
    assert "int64 input is not differentiable" in report.rows[2].note
    assert "not differentiable" in str(report)


def test_report_table_and_plain_data():
    report = gradcheck.check(F.attention_forward, planted(F.attention_backward, 2, (0, 1, 4, 2), 0.5), qkv())
    text = str(report)
    for column in ("tensor", "shape", "max abs err", "max rel err", "worst index", "analytic", "numeric", "status"):
        assert column in text
    lines = text.splitlines()
    assert lines[0].startswith("check(attention_forward, wrong)") and "float64" in lines[0]
    assert lines[-1].startswith("FAILED ('v')")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False and data["dtype"] == "float64"
    assert [row["name"] for row in data["rows"]] == ["q", "k", "v"]
    assert data["rows"][2]["worst_index"] == [0, 1, 4, 2] and data["rows"][2]["passed"] is False
    assert data["rows"][2]["shape"] == [2, 2, 5, 3]


def test_names_can_be_given():
    report = gradcheck.check(F.attention_forward, F.attention_backward, qkv(), names=["query", "key", "value"])
    assert [row.name for row in report.rows] == ["query", "key", "value"]
    with pytest.raises(ValueError, match="names must be a list of 3 strings"):
        gradcheck.check(F.attention_forward, F.attention_backward, qkv(), names=["q"])


# --- clear errors for bad forward / backward results and bad arguments ---------------------------

def test_forward_must_return_out_and_cache():
    with pytest.raises(TypeError, match=r"forward must return \(out, cache\).*got array of shape \(3, 5\)"):
        gradcheck.check(lambda x: x * 2, lambda dout, cache: dout * 2, (np.ones((3, 5)),))
    with pytest.raises(TypeError, match=r"forward must return \(out, cache\).*tuple of length 3"):
        gradcheck.check(lambda x: (2 * x, None, None), lambda dout, cache: 2 * dout, (np.ones(3),))
    with pytest.raises(TypeError, match="float32/float64 array as its output; got list"):
        gradcheck.check(lambda x: ([1.0], None), lambda dout, cache: dout, (np.ones(3),))


def test_backward_with_a_wrong_number_of_gradients():
    def two_grads(dout, cache):
        return F.attention_backward(dout, cache)[:2]

    with pytest.raises(ValueError, match=r"backward returned 2 gradient\(s\); expected 3, one per differentiable "
                                         r"input \(q, k, v\)"):
        gradcheck.check(F.attention_forward, two_grads, qkv())
    with pytest.raises(TypeError, match="backward must return the input gradients.*got dict"):
        gradcheck.check(F.attention_forward, lambda dout, cache: {"q": dout}, qkv())


def test_backward_with_a_wrong_shape_or_a_missing_gradient():
    def transposed_dk(dout, cache):
        dq, dk, dv = F.attention_backward(dout, cache)
        return dq, dk.swapaxes(-1, -2), dv

    with pytest.raises(ValueError, match=r"gradient of shape \(2, 2, 4, 5\) for 'k'; expected the shape of 'k', "
                                         r"\(2, 2, 5, 4\)"):
        gradcheck.check(F.attention_forward, transposed_dk, qkv())
    with pytest.raises(ValueError, match="returned None for the gradient of 'v'"):
        gradcheck.check(F.attention_forward, lambda d, c: (*F.attention_backward(d, c)[:2], None), qkv())


def test_module_backward_with_a_wrong_number_of_gradients(rng):
    class TwoGrads(na.ScaledDotProductAttention):
        def backward(self, dout):
            return super().backward(dout)[:2]

    with pytest.raises(ValueError, match=r"TwoGrads.backward returned 2 gradient\(s\); expected 3"):
        gradcheck.check_module(TwoGrads(), *qkv())
    with pytest.raises(TypeError, match="Module protocol"):
        gradcheck.check_module(lambda x: x, np.ones(3))


def test_mutation_of_inputs_or_dout_is_reported():
    def scaling_in_place(x):
        x *= 2
        return x.copy(), None

    with pytest.raises(ValueError, match="forward modified its input 'x' in place"):
        gradcheck.check(scaling_in_place, lambda dout, cache: 2 * dout, (np.ones(3),))

    def writes_dout(dout, cache):
        dout *= 2
        return dout

    with pytest.raises(ValueError, match="read-only"):
        gradcheck.check(lambda x: (2 * x, None), writes_dout, (np.ones(3),))


def test_an_output_that_shares_memory_with_the_cache_fails_its_row(rng):
    """Editing the output in place (a residual added with +=) must not change the backward."""
    def shares(x):
        _, cache = F.layer_norm_forward(x)
        return cache.x_hat, cache  # the normalized input is the output and the backward's residual

    x = rng.standard_normal((3, 5))
    report = gradcheck.check(shares, F.layer_norm_backward, (x,), fast=True)
    assert not report.passed and [row.name for row in report.failures] == ["output aliasing"]
    assert "shares memory with what the backward reads" in report.failures[0].note
    assert gradcheck.check(F.layer_norm_forward, F.layer_norm_backward, (x,), fast=True).passed
    x_before = x.copy()
    identity = gradcheck.check(lambda x: (x, None), lambda dout, cache: dout.copy(), (x,))  # returns its input
    assert identity.passed and np.array_equal(x, x_before)


def test_a_module_whose_output_is_its_cache_fails_the_aliasing_row(rng):
    class Relu:
        params: dict = {}
        grads: dict = {}

        def forward(self, x):
            self.out = np.maximum(x, 0.0)
            return self.out  # kept for the backward and returned: shared

        def backward(self, dout):
            return dout * (self.out > 0)

    x = rng.standard_normal((4, 3)) + 0.1
    report = gradcheck.check_module(Relu(), x, fast=True)
    assert [row.name for row in report.failures] == ["output aliasing"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0.0}, ValueError, "eps must be positive"),
    ({"atol": -1.0}, ValueError, "atol must be non-negative"),
    ({"rtol": "1e-3"}, TypeError, "rtol must be a real number"),
    ({"fast": 1}, TypeError, "fast must be a bool"),
])
def test_bad_options_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        gradcheck.check(F.softmax_forward, F.softmax_backward, (np.ones((2, 3)),), **kwargs)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match=r"inputs must be a tuple of arrays \(for one input write \(x,\)\)"):
        gradcheck.check(F.softmax_forward, F.softmax_backward, np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"inputs\[1\] \('axis'\) must be a NumPy array.*functools.partial"):
        gradcheck.check(F.softmax_forward, F.softmax_backward, (np.ones((2, 3)), -1))
    with pytest.raises(TypeError, match="must have dtype float32 or float64; got dtype complex128"):
        gradcheck.check(F.softmax_forward, F.softmax_backward, (np.ones((2, 3), dtype=complex),))


def test_numerical_gradients_of_a_non_contiguous_input():
    x = np.random.default_rng(0).standard_normal((4, 3)).T  # Fortran-ordered view
    dout = np.random.default_rng(1).standard_normal((3, 4))
    (grad,) = gradcheck.numerical_gradients(lambda x: np.sin(x), [x], dout)
    assert rel_error(grad, np.cos(x) * dout) < 1e-8


def test_multihead_attention_every_parameter_checked_and_restored(rng):
    # training: dropout on
    module = na.MultiHeadAttention(8, 2, batch_first=True, dropout=0.3, rng=np.random.default_rng(0))
    x = random_like(rng, (2, 3, 8))
    module(x)
    module.backward(random_like(rng, (2, 3, 8)))
    params, grads = module.state_dict(), {k: g.copy() for k, g in module.grads.items()}
    rng_state = module.rng.bit_generator.state
    report = gradcheck.check_module(module, x)
    assert report.passed, report
    assert [row.name for row in report.rows] == ["query", *module.params, "grads accumulate"]
    assert all(np.array_equal(module.params[k], v) for k, v in params.items())
    assert all(np.array_equal(module.grads[k], g) for k, g in grads.items())
    assert module.rng.bit_generator.state == rng_state

    key, value = random_like(rng, (2, 4, 8)), random_like(rng, (2, 4, 8))
    padding = np.zeros((2, 4), dtype=bool)
    padding[0, 3] = True
    report = gradcheck.check_module(module, x, key, value, key_padding_mask=padding, fast=True)
    assert report.passed and [row.name for row in report.rows][:3] == ["query", "key", "value"]


def test_a_wrong_parameter_gradient_is_named():
    class LateBias(na.MultiHeadAttention):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads["out_proj.bias"] *= 1.01  # 1 % off, one parameter
            return dx

    module = LateBias(8, 2, rng=np.random.default_rng(0))
    report = gradcheck.check_module(module, np.random.default_rng(1).standard_normal((2, 3, 8)))
    # it scales the accumulated sum, not its own term: the second backward does not add the same again
    assert [row.name for row in report.failures] == ["out_proj.bias", "grads accumulate"]
    assert report.failures[0].num_failed == 8


def test_scalar_losses_and_index_inputs(rng):
    logits, target = random_like(rng, (4, 5)), rng.integers(0, 5, 4)
    report = gradcheck.check(F.cross_entropy_forward, F.cross_entropy_backward, (logits, target))
    assert report.passed and [row.status for row in report.rows] == ["ok", "skipped"]  # 0-d loss, int target
    halved = gradcheck.check(F.cross_entropy_forward, lambda d, c: F.cross_entropy_backward(d, c) / 2,
                             (logits, target))
    assert [row.name for row in halved.failures] == ["logits"]

    embedding = na.Embedding(6, 3, rng=np.random.default_rng(0))  # its backward returns None: no input gradient
    report = gradcheck.check_module(embedding, rng.integers(0, 6, (2, 4)))
    assert report.passed and [(row.name, row.status) for row in report.rows] == [
        ("indices", "skipped"), ("weight", "ok"), ("grads accumulate", "ok")]

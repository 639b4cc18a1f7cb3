"""Properties that hold for every shape and option, checked with hypothesis.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default: 200 examples per
property), ``dev`` (30, for quick iteration) and ``thorough`` (2000). Shapes
stay small so that 200 examples take a few seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
from helpers.impls import attention_impl
from helpers.multihead_cases import MHACase
from helpers.precision import assert_float32_close, assert_within_rounding, attention_error_scales
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_attention import functional as F

_common = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=200, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FLOAT_DTYPES = st.sampled_from([np.float32, np.float64])


# ---------------------------------------------------------------- softmax


@st.composite
def logits(draw, dtype):
    """(x, axis): small arrays of any rank 1-3, finite entries of any size and some -inf."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    big = float(np.finfo(dtype).max) / 4  # room for a shift by a constant of the same size
    finite = st.floats(-big, big, width=np.finfo(dtype).bits) | st.floats(-30, 30, width=np.finfo(dtype).bits)
    elements = finite | st.just(-np.inf)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


@given(data=st.data(), dtype=FLOAT_DTYPES)
def test_softmax_rows_sum_to_one(data, dtype):
    x, axis = data.draw(logits(dtype))
    y, _ = F.softmax_forward(x, axis=axis)
    assert y.dtype == dtype and np.all((y >= 0) & (y <= 1))
    sums = y.sum(axis=axis, dtype=np.float64)
    any_key = np.isfinite(x).any(axis=axis)  # a row of only -inf is fully masked: all 0
    tolerance = (x.shape[axis] + 2) * np.finfo(dtype).eps
    assert np.all(np.abs(sums[any_key] - 1) <= tolerance)
    assert np.all(sums[~any_key] == 0)


@given(data=st.data(), dtype=FLOAT_DTYPES)
def test_softmax_is_invariant_to_a_constant_per_row(data, dtype):
    x, axis = data.draw(logits(dtype))
    big = float(np.finfo(dtype).max) / 4
    shift_shape = tuple(1 if i == axis % x.ndim else n for i, n in enumerate(x.shape))
    width = np.finfo(dtype).bits
    shift = data.draw(hnp.arrays(dtype, shift_shape, elements=st.floats(-big, big, width=width)
                                 | st.floats(-1e3, 1e3, width=width)))
    y, _ = F.softmax_forward(x, axis=axis)
    y_shifted, _ = F.softmax_forward(x + shift, axis=axis)
    # x + c rounds each entry by up to eps |x + c|: that moves exp(x - max) by a relative 2 eps |x + c|.
    eps = np.finfo(dtype).eps
    spread = np.abs(x.astype(np.float64)) + np.abs(shift.astype(np.float64))
    finite_spread = np.where(np.isfinite(spread), spread, 0).max(axis=axis, keepdims=True)
    tolerance = 4 * eps * (finite_spread + x.shape[axis]) * np.maximum(y, y_shifted)
    assert np.all(np.abs(y - y_shifted) <= tolerance + np.finfo(dtype).tiny)


# ---------------------------------------------------------------- attention


@dataclass
class Problem:
    """An attention call: inputs, keyword options and a seeded upstream gradient."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    dout: np.ndarray
    options: dict = field(default_factory=dict)

    def run(self, dtype=None, seed=0, dout=None):
        cast = (lambda x: x) if dtype is None else (lambda x: x.astype(dtype))
        out, cache = F.attention_forward(cast(self.q), cast(self.k), cast(self.v), **self.options,
                                         rng=np.random.default_rng(seed))
        grads = F.attention_backward(cast(self.dout if dout is None else dout), cache)
        return out, cache.weights, grads

    @property
    def scale(self) -> float:
        scale = self.options.get("scale")
        return 1 / np.sqrt(self.q.shape[-1]) if scale is None else scale


VALUES = st.floats(-3, 3, width=32)  # float32-exact, so float32 and float64 see the same numbers


@st.composite
def problems(draw, masks=("none", "bool", "float", "causal"), dropout=False):
    """Small attention problems over every layout: unbatched, heads, batch dims that broadcast, GQA."""
    L, S, E, Ev = (draw(st.integers(1, n)) for n in (5, 5, 4, 3))
    if draw(st.booleans()):
        q_lead, kv_lead, scores_lead = (), (), ()
    else:
        kv_heads, group = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        sizes = draw(st.lists(st.tuples(st.integers(1, 2), st.sampled_from(["same", "q-1", "kv-1"])), max_size=2))
        q_batch = tuple(1 if how == "q-1" else n for n, how in sizes)
        kv_batch = tuple(1 if how == "kv-1" else n for n, how in sizes)
        q_lead, kv_lead = (*q_batch, kv_heads * group), (*kv_batch, kv_heads)
        scores_lead = (*np.broadcast_shapes(q_batch, kv_batch), kv_heads * group)

    def array(*shape):  # fill=nothing: every entry drawn, not one repeated fill value
        return draw(hnp.arrays(np.float64, shape, elements=VALUES, fill=st.nothing()))

    q, k, v = array(*q_lead, L, E), array(*kv_lead, S, E), array(*kv_lead, S, Ev)
    options = {}
    kind = draw(st.sampled_from(masks))
    scores_shape = (*scores_lead, L, S)
    if kind == "causal":
        options["is_causal"] = True
    elif kind != "none":
        # Broadcast the mask over a random subset of the axes, maybe dropping leading ones.
        drop = draw(st.integers(0, len(scores_shape) - 2))
        mask_shape = tuple(1 if draw(st.booleans()) else n for n in scores_shape[drop:])
        if kind == "bool":
            options["attn_mask"] = draw(hnp.arrays(np.bool_, mask_shape))
        else:
            options["attn_mask"] = draw(hnp.arrays(np.float64, mask_shape, elements=VALUES | st.just(-np.inf)))
    if draw(st.booleans()):
        options["scale"] = draw(st.sampled_from([0.05, 0.3, 1.0, 2.0]))
    if dropout and draw(st.booleans()):
        options["dropout_p"] = 0.25
    dout = array(*scores_lead, L, Ev)
    return Problem(q, k, v, dout, options)


def permute_keys(problem: Problem, order: np.ndarray) -> Problem:
    mask = problem.options.get("attn_mask")
    options = dict(problem.options)
    if mask is not None and mask.shape[-1] > 1:
        options["attn_mask"] = mask[..., order]
    return replace(problem, k=problem.k[..., order, :], v=problem.v[..., order, :], options=options)


@given(problem=problems(masks=("none", "bool", "float")), data=st.data())
def test_attention_is_equivariant_to_permuting_keys_and_values(problem, data):
    order = np.array(data.draw(st.permutations(range(problem.k.shape[-2]))), dtype=int)
    out, weights, (dq, dk, dv) = problem.run()
    out_p, weights_p, (dq_p, dk_p, dv_p) = permute_keys(problem, order).run()
    score_size, magnitudes = attention_error_scales(problem.q, problem.k, problem.v, problem.dout, weights,
                                                    problem.scale, problem.options.get("attn_mask"))
    checks = [("out", out_p, out), ("weights", weights_p, weights[..., order]), ("dq", dq_p, dq),
              ("dk", dk_p, dk[..., order, :]), ("dv", dv_p, dv[..., order, :])]
    magnitudes["weights"] = np.ones_like(weights)
    for name, actual, expected in checks:
        magnitude = magnitudes[name][..., order, :] if name in ("dk", "dv") else magnitudes[name]
        assert_within_rounding(name, actual, expected, magnitude, score_size, np.float64)


@given(problem=problems(masks=("causal",), dropout=True), data=st.data())
def test_causal_output_ignores_later_positions_and_sends_them_no_gradient(problem, data):
    L = problem.q.shape[-2]
    i = data.draw(st.integers(0, L - 1), label="position")

    def later_changed(x):  # every value at positions after i (rows i+1 ...) moved by 0.5 to 2
        shift = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(0.5, 2.0, width=32), fill=st.nothing()))
        changed = x.copy()
        changed[..., i + 1:, :] += shift[..., i + 1:, :]
        return changed

    changed = replace(problem, q=later_changed(problem.q), k=later_changed(problem.k), v=later_changed(problem.v))
    out, weights, _ = problem.run(seed=3)
    out_c, weights_c, _ = changed.run(seed=3)
    np.testing.assert_array_equal(out_c[..., : i + 1, :], out[..., : i + 1, :])
    np.testing.assert_array_equal(weights_c[..., : i + 1, :], weights[..., : i + 1, :])

    dout = problem.dout.copy()
    dout[..., i + 1:, :] = 0  # the loss sees positions 0..i only
    _, _, (dq, dk, dv) = changed.run(seed=3, dout=dout)
    assert not dq[..., i + 1:, :].any() and not dk[..., i + 1:, :].any() and not dv[..., i + 1:, :].any()


@given(problem=problems())
def test_float32_agrees_with_float64_to_float32_precision(problem):
    out64, weights64, grads64 = problem.run()
    out32, weights32, grads32 = problem.run(np.float32)
    mask = problem.options.get("attn_mask")
    score_size, magnitudes = attention_error_scales(problem.q, problem.k, problem.v, problem.dout, weights64,
                                                    problem.scale, mask)
    assert_float32_close("out", out32, out64, magnitudes["out"], score_size)
    assert_float32_close("weights", weights32, weights64, np.ones_like(weights64), score_size)
    for name, g32, g64 in zip(("dq", "dk", "dv"), grads32, grads64):
        assert_float32_close(name, g32, g64, magnitudes[name], score_size)


# ---------------------------------------------------------------- multi-head attention


@st.composite
def self_attention_cases(draw):
    """A MultiHeadAttention self-attention call over every option that self-attention allows."""
    num_heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    num_kv_heads = draw(st.sampled_from([d for d in range(1, num_heads + 1) if num_heads % d == 0]))
    module = {
        "embed_dim": num_heads * head_dim, "num_heads": num_heads, "num_kv_heads": num_kv_heads,
        "dropout": draw(st.sampled_from([0.0, 0.3])), "bias": draw(st.booleans()),
        "add_bias_kv": draw(st.booleans()), "add_zero_attn": draw(st.booleans()), "batch_first": draw(st.booleans()),
    }
    queries = draw(st.integers(1, 4))
    attn_mask = draw(st.sampled_from([None, "2d", "3d"]))
    return MHACase(
        module=module, batch=draw(st.none() | st.integers(1, 3)), queries=queries, keys=queries,
        self_attention=True, mask_kind=draw(st.sampled_from(["bool", "float"])),
        key_padding_mask=draw(st.booleans()), attn_mask=attn_mask,
        is_causal=attn_mask != "3d" and draw(st.booleans()), need_weights=draw(st.booleans()),
        training=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
    )


def forward_backward(module, inputs, kwargs, dout, rng_state):
    """One forward and backward from a fresh start: same dropout draws, gradients from zero."""
    module.rng.bit_generator.state = rng_state
    module.zero_grad()
    out, _ = module(*inputs, **kwargs)
    grads = module.backward(dout)
    return out, grads, {name: grad.copy() for name, grad in module.grads.items()}


@given(case=self_attention_cases(), direction_seed=st.integers(0, 2**16))
def test_self_attention_gradient_is_the_sum_of_the_three_input_paths(case, direction_seed):
    module, (x,), kwargs, dout = case.build()
    rng_state = module.rng.bit_generator.state
    out, dx, param_grads = forward_backward(module, (x,), kwargs, dout, rng_state)
    out_3, (dquery, dkey, dvalue), param_grads_3 = forward_backward(module, (x, x.copy(), x.copy()), kwargs, dout,
                                                                    rng_state)
    np.testing.assert_array_equal(out, out_3)
    path_sum = dquery + dkey + dvalue
    np.testing.assert_allclose(dx, path_sum, rtol=1e-12, atol=1e-14 * np.abs(path_sum).max(initial=1.0))
    for name, grad in param_grads.items():
        np.testing.assert_allclose(grad, param_grads_3[name], rtol=1e-12, atol=1e-14)

    # And dx is the derivative of sum(out * dout) along a random direction: central differences.
    direction = np.random.default_rng(direction_seed).standard_normal(x.shape)
    step = 1e-6

    def loss(shift):
        module.rng.bit_generator.state = rng_state
        return float(np.sum(module(x + shift * direction, **kwargs)[0] * dout))

    numeric = (loss(step) - loss(-step)) / (2 * step)
    analytic = float(np.sum(dx * direction))
    # Central differences: O(step^2) truncation, O(eps |loss| / step) rounding.
    scale = np.sqrt(np.sum(dx**2) * np.sum(direction**2)) + np.abs(out * dout).sum()
    assert abs(numeric - analytic) <= 1e-7 * scale, (numeric, analytic)


# ---------------------------------------------------------------- naive and flash


def test_naive_and_flash_agree():
    flash_forward, flash_backward = attention_impl("flash")  # skips while the tiled pair is not in the library

    @given(problem=problems(), block_size=st.integers(1, 4))
    def agree(problem, block_size):
        out, weights, (dq, dk, dv) = problem.run()
        out_f, cache = flash_forward(problem.q, problem.k, problem.v, **problem.options, block_size=block_size)
        grads_f = flash_backward(problem.dout, cache)
        score_size, magnitudes = attention_error_scales(problem.q, problem.k, problem.v, problem.dout, weights,
                                                        problem.scale, problem.options.get("attn_mask"))
        assert_within_rounding("out", out_f, out, magnitudes["out"], score_size, np.float64)
        for name, grad_f, grad in zip(("dq", "dk", "dv"), grads_f, (dq, dk, dv)):
            assert grad_f.dtype == grad.dtype
            assert_within_rounding(name, grad_f, grad, magnitudes[name], score_size, np.float64)

    agree()

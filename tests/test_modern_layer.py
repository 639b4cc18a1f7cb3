"""CausalSelfAttention: a torch twin from plain torch ops, finite differences, the Module contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch
from helpers.rope_twins import torch_twin

import gradcheck
import numpy_attention as na
from gradcheck import torch_ops
from numpy_attention.modern import QK_NORM_EPS

# Every implementation takes every option.
IMPLS = ["textbook", "textbook-flash", "dense", "flash"]

# (name, options, L): GQA / MQA, QK-norm, both RoPE layouts, window, soft-cap, sinks, bias, custom positions.
CONFIGS = [
    ("mha-rope-half", dict(num_heads=4), 7),
    ("gqa-qknorm-interleaved-window", dict(num_heads=4, num_kv_heads=2, qk_norm=True, interleaved=True,
                                           window=(3, 0)), 9),
    ("mqa-softcap-sinks-bias", dict(num_heads=4, num_kv_heads=1, softcap=3.0, sinks=True, bias=True), 6),
    ("gqa-everything", dict(num_heads=4, num_kv_heads=2, qk_norm=True, window=(2, None), softcap=2.0, sinks=True,
                            bias=True, rope_base=500.0), 8),
    ("no-rope-window-sinks", dict(num_heads=2, rope=False, window=(1, 1), sinks=True), 5),
    ("gqa-positions-interleaved", dict(num_heads=4, num_kv_heads=2, interleaved=True, qk_norm=True,
                                       positions="far"), 6),
    ("long-window-sinks-qknorm", dict(num_heads=4, num_kv_heads=2, qk_norm=True, window=(40, 0), sinks=True,
                                      softcap=4.0, bias=True), 150),  # 3 query x 3 key tiles of 64
]
EMBED = 16


def make_layer(options, impl, dtype=np.float64, seed=0):
    """The layer with every parameter random (gains and sinks away from their initial 1 and 0)."""
    options = {k: v for k, v in options.items() if k != "positions"}
    layer = na.CausalSelfAttention(EMBED, impl=impl, dtype=dtype, rng=seed, **options)
    rng = np.random.default_rng(seed + 1)
    for name, value in layer.params.items():
        if name.endswith("norm.weight"):
            value[...] = 1 + 0.3 * rng.standard_normal(value.shape)
        elif name == "sinks" or name.endswith("bias"):
            value[...] = rng.standard_normal(value.shape)
    return layer


def positions_of(options, length):
    if options.get("positions") == "far":
        return 5000 + np.random.default_rng(3).permutation(length)
    return None


def torch_layer(params, x, layer, positions):
    """The layer from plain torch ops: linear, per-head rms_norm, a RoPE twin, the attention twin, linear."""
    torch = require_torch()
    linear = torch.nn.functional.linear
    batch, length, _ = x.shape
    heads = []
    for name, count in (("q", layer.num_heads), ("k", layer.num_kv_heads), ("v", layer.num_kv_heads)):
        y = linear(x, params[f"{name}_proj.weight"], params.get(f"{name}_proj.bias"))
        y = y.view(batch, length, count, layer.head_dim).transpose(1, 2)
        if name != "v" and layer.qk_norm:
            y = torch.nn.functional.rms_norm(y, (layer.head_dim,), params[f"{name}_norm.weight"], QK_NORM_EPS)
        if name != "v" and layer.rope:
            y = torch_twin(layer.interleaved)(y, np.arange(length) if positions is None else positions,
                                              layer.rope_base)
        heads.append(y)
    out = torch_ops.attention_with_options(
        *heads, params.get("sinks"), is_causal=True, softcap=layer.softcap, window=layer.window)
    return linear(out.transpose(1, 2).reshape(batch, length, -1), params["o_proj.weight"], params.get("o_proj.bias"))


def run_torch(layer, x, positions, dout):
    torch = require_torch()
    params = {name: torch.tensor(value, requires_grad=True) for name, value in layer.params.items()}
    x_t = torch.tensor(x, requires_grad=True)
    out = torch_layer(params, x_t, layer, positions)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), x_t.grad.numpy(), {name: p.grad.numpy() for name, p in params.items()}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, options, length", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("magnitude", [1.0, 8.0], ids=["normal", "large"])
def test_layer_matches_the_torch_twin(impl, name, options, length, magnitude):
    layer = make_layer(options, impl)
    rng = np.random.default_rng(7)
    x = magnitude * random_like(rng, (2, length, EMBED))
    dout = random_like(rng, (2, length, EMBED))
    positions = positions_of(options, length)
    out = layer(x, positions)
    dx = layer.backward(dout)
    expected_out, expected_dx, expected_grads = run_torch(layer, x, positions, dout)
    assert rel_error(out, expected_out) < 1e-10
    assert rel_error(dx, expected_dx) < 1e-10
    assert set(layer.grads) == set(expected_grads)
    for param, grad in layer.grads.items():
        assert rel_error(grad, expected_grads[param]) < 1e-10, param
        assert np.abs(grad).max() > 0, param  # every parameter is reached: a zero gradient would hide a bug


def test_the_default_kernel_runs_the_layer_without_options():
    """The kernels already take GQA, QK-norm and RoPE configurations (no window, soft-cap or sinks)."""
    options = dict(num_heads=4, num_kv_heads=2, qk_norm=True, interleaved=True, bias=True)
    layer, reference = make_layer(options, na.attention_impls.DEFAULT_IMPL), make_layer(options, "textbook")
    rng = np.random.default_rng(8)
    x, dout = random_like(rng, (2, 6, EMBED)), random_like(rng, (2, 6, EMBED))
    assert rel_error(layer(x), reference(x)) < 1e-12
    assert rel_error(layer.backward(dout), reference.backward(dout)) < 1e-12
    for name in layer.grads:
        assert rel_error(layer.grads[name], reference.grads[name]) < 1e-12, name


def test_the_textbook_and_tiled_pairs_agree_across_tiles():
    options = dict(num_heads=2, qk_norm=True, window=(70, 0), softcap=5.0, sinks=True)
    rng = np.random.default_rng(9)
    x, dout = random_like(rng, (1, 140, EMBED)), random_like(rng, (1, 140, EMBED))
    dense, tiled = make_layer(options, "textbook"), make_layer(options, "textbook-flash")
    assert rel_error(dense(x), tiled(x)) < 1e-12
    assert rel_error(dense.backward(dout), tiled.backward(dout)) < 1e-12
    for name in dense.grads:
        assert rel_error(dense.grads[name], tiled.grads[name]) < 1e-12, name


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [
    dict(num_heads=2, num_kv_heads=1, qk_norm=True, window=(2, 0), softcap=1.5, sinks=True, bias=True),
    dict(num_heads=2, interleaved=True, sinks=True, dropout=0.3, positions="far"),
], ids=["everything", "dropout-train"])
def test_layer_gradients_match_finite_differences(impl, options):
    layer = na.CausalSelfAttention(8, impl=impl, rng=1, **{k: v for k, v in options.items() if k != "positions"})
    rng = np.random.default_rng(2)
    for value in layer.params.values():  # sinks and gains away from 0 and 1
        value += 0.5 * rng.standard_normal(value.shape)
    x = np.random.default_rng(3).standard_normal((2, 4, 8))
    report = gradcheck.check_module(layer, x, positions=positions_of(options, 4))
    assert report.passed, str(report)
    assert {row.name for row in report.rows} >= set(layer.params)


def test_unbatched_input_is_the_batch_of_one():
    layer = make_layer(dict(num_heads=4, num_kv_heads=2, sinks=True, window=(2, 0)), "textbook")
    rng = np.random.default_rng(10)
    x, dout = random_like(rng, (5, EMBED)), random_like(rng, (5, EMBED))
    out = layer(x)
    dx = layer.backward(dout)
    grads = {name: grad.copy() for name, grad in layer.grads.items()}
    layer.zero_grad()
    assert out.shape == x.shape and rel_error(out, layer(x[None])[0]) == 0
    assert rel_error(dx, layer.backward(dout[None])[0]) == 0
    for name in grads:
        assert rel_error(grads[name], layer.grads[name]) == 0, name


def test_backward_accumulates_and_zero_grad_resets():
    layer = make_layer(dict(num_heads=4, num_kv_heads=2, qk_norm=True, sinks=True, bias=True), "textbook")
    rng = np.random.default_rng(11)
    x, dout = random_like(rng, (2, 5, EMBED)), random_like(rng, (2, 5, EMBED))
    layer(x)
    layer.backward(dout)
    once = {name: grad.copy() for name, grad in layer.grads.items()}
    layer.backward(dout)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-14, atol=0)
    layer.zero_grad()
    assert all(not grad.any() for grad in layer.grads.values())


def test_positions_shift_leaves_the_output_unchanged():
    """RoPE depends on position differences only: shifting every position changes nothing."""
    layer = make_layer(dict(num_heads=4, qk_norm=True), "textbook")
    x = random_like(np.random.default_rng(12), (2, 6, EMBED))
    assert rel_error(layer(x), layer(x, np.arange(6) + 1234)) < 1e-10
    assert rel_error(layer(x), layer(x, np.arange(6)[::-1].copy())) > 1e-3  # reordered positions: another output


def test_float32_stays_float32_and_is_close_to_float64():
    options = dict(num_heads=4, num_kv_heads=2, qk_norm=True, window=(3, 0), softcap=3.0, sinks=True, bias=True)
    layer32, layer64 = make_layer(options, "textbook", np.float32), make_layer(options, "textbook")
    layer32.load_state_dict(layer64.state_dict())
    assert all(value.dtype == np.float32 for value in layer32.params.values())
    rng = np.random.default_rng(13)
    x, dout = random_like(rng, (2, 5, EMBED)), random_like(rng, (2, 5, EMBED))
    out = layer32(x.astype(np.float32))
    dx = layer32.backward(dout.astype(np.float32))
    assert out.dtype == dx.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in layer32.grads.values())
    assert rel_error(out, layer64(x)) < 1e-5 and rel_error(dx, layer64.backward(dout)) < 1e-5


def test_state_dict_round_trip_and_names(tmp_path):
    options = dict(num_heads=4, num_kv_heads=2, qk_norm=True, sinks=True, bias=True)
    layer = make_layer(options, "textbook")
    assert set(layer.params) == {f"{p}_proj.{kind}" for p in "qkvo" for kind in ("weight", "bias")} | {
        "q_norm.weight", "k_norm.weight", "sinks"}
    assert layer.params["k_proj.weight"].shape == (2 * 4, EMBED) and layer.params["sinks"].shape == (4,)
    other = make_layer(options, "textbook", seed=5)
    x = random_like(np.random.default_rng(14), (2, 5, EMBED))
    assert rel_error(layer(x), other(x)) > 1e-3
    other.load_state_dict(layer.state_dict())
    assert rel_error(layer(x), other(x)) == 0
    layer.save(tmp_path / "layer.npz")
    third = make_layer(options, "textbook", seed=6)
    third.load(tmp_path / "layer.npz")
    assert rel_error(layer(x), third(x)) == 0


def test_initialisation():
    layer = na.CausalSelfAttention(EMBED, 4, num_kv_heads=2, qk_norm=True, sinks=True, bias=True, impl="textbook",
                                  rng=0)
    bound = 1 / math.sqrt(EMBED)
    for name in ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "q_proj.bias"):
        assert np.abs(layer.params[name]).max() <= bound and layer.params[name].std() > bound / 3, name
    assert (layer.params["q_norm.weight"] == 1).all() and not layer.params["sinks"].any()
    assert "q_proj.bias" not in na.CausalSelfAttention(EMBED, 4).params  # bias=False by default, as Llama


def test_the_layer_does_not_touch_its_input_or_dout():
    layer = make_layer(dict(num_heads=4, qk_norm=True, sinks=True), "textbook")
    rng = np.random.default_rng(15)
    x, dout = random_like(rng, (2, 5, EMBED)), random_like(rng, (2, 5, EMBED))
    x_copy, dout_copy = x.copy(), dout.copy()
    out = layer(x)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    assert not np.shares_memory(out, x) and not np.shares_memory(dx, dout)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(embed_dim=0), ValueError, "embed_dim"),
    (dict(embed_dim=10, num_heads=4), ValueError, "embed_dim must be divisible by num_heads"),
    (dict(num_kv_heads=3), ValueError, "num_kv_heads"),
    (dict(embed_dim=12, num_heads=4), ValueError, "rope needs an even head_dim"),
    (dict(rope_base=-1.0), ValueError, "rope_base"),
    (dict(interleaved="yes"), TypeError, "interleaved"),
    (dict(qk_norm=1), TypeError, "qk_norm"),
    (dict(window=(3,)), TypeError, "window"),
    (dict(window=(-1, 0)), ValueError, "window"),
    (dict(softcap=0.0), ValueError, "softcap"),
    (dict(sinks=None), TypeError, "sinks"),
    (dict(bias="no"), TypeError, "bias"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(impl="fast"), ValueError, "impl"),
    (dict(dtype=np.int32), TypeError, "dtype"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, match):
    arguments = dict(embed_dim=8, num_heads=4) | kwargs
    with pytest.raises(error, match=match):
        na.CausalSelfAttention(arguments.pop("embed_dim"), arguments.pop("num_heads"), **arguments)


def test_bad_forward_and_backward_calls_are_named():
    layer = na.CausalSelfAttention(8, 2, impl="textbook")
    with pytest.raises(ValueError, match="before forward"):
        layer.backward(np.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match="x must have embed_dim = 8"):
        layer(np.zeros((1, 3, 6)))
    with pytest.raises(ValueError, match="x"):
        layer(np.zeros((1, 1, 3, 8)))
    with pytest.raises(TypeError, match="x"):
        layer(np.zeros((1, 3, 8), dtype=bool))
    with pytest.raises(ValueError, match=r"positions must have shape \(3,\)"):
        layer(np.zeros((1, 3, 8)), np.arange(4))
    with pytest.raises(TypeError, match="positions"):
        layer(np.zeros((1, 3, 8)), np.arange(3.0))
    layer(np.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.zeros((1, 4, 8)))


def test_python_m_gradcheck_lists_every_option_and_layer_config_per_impl():
    from gradcheck.suite import ENTRIES
    from gradcheck.suite_modern import MODERN_ENTRIES, MODERN_IMPLS

    names = [entry.name for entry in ENTRIES]
    assert all(entry.name in names for entry in MODERN_ENTRIES) and len(set(names)) == len(names)
    assert set(IMPLS) <= set(MODERN_IMPLS)
    for impl in MODERN_IMPLS:
        ours = " ".join(name for name in names if name.startswith("modern/") and name.endswith(f"/{impl}"))
        for option in ("softcap", "alibi", "window", "sinks", "offset", "empty-rows", "everything",
                       "CausalSelfAttention/mha-rope", "qk-norm", "interleaved", "mqa", "positions", "dropout"):
            assert option in ours, (impl, option)


@pytest.mark.parametrize("impl", IMPLS)
def test_editing_the_returned_output_or_reading_frozen_input_leaves_the_backward_alone(impl):
    options = dict(num_heads=4, num_kv_heads=2, qk_norm=True, window=(2, 0), sinks=True, bias=True)
    rng = np.random.default_rng(16)
    x, dout = random_like(rng, (2, 5, EMBED)), random_like(rng, (2, 5, EMBED))
    x.flags.writeable = False
    results = []
    for edit in (False, True):
        layer = make_layer(options, impl)
        out = layer(x)
        if edit:
            out[...] = 1e6
        results.append((layer.backward(dout), {name: grad.copy() for name, grad in layer.grads.items()}))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for name in results[0][1]:
        np.testing.assert_array_equal(results[0][1][name], results[1][1][name], err_msg=name)



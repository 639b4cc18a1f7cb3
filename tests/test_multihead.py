"""MultiHeadAttention without torch: finite differences, layouts, masks, modes, dispatch and bad input."""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pytest
from helpers.example_runner import assert_png, printed_matrix, run_example
from helpers.multihead_cases import MHACase, gradient_errors
from helpers.numerics import random_like, rel_error

from gradcheck import numerical_gradients
from numpy_attention import MultiHeadAttention
from numpy_attention.attention_impls import ATTENTION_IMPLS
from numpy_attention.kernels import AttentionCache, attention_backward, attention_forward

# A representative subset for finite differences: every option appears at least once.
FD_CASES = [
    MHACase({"embed_dim": 6, "num_heads": 3}, batch=2, queries=4, keys=4, self_attention=True,
            key_padding_mask=True, is_causal=True, name="self-attention, padding, causal"),
    MHACase({"embed_dim": 4, "num_heads": 2, "kdim": 5, "vdim": 3, "add_bias_kv": True, "add_zero_attn": True,
             "batch_first": False}, batch=2, queries=3, keys=4, mask_kind="float", key_padding_mask=True,
            attn_mask="3d", need_weights=False, name="cross, kdim/vdim, bias_kv, zero_attn, float masks"),
    MHACase({"embed_dim": 8, "num_heads": 4, "num_kv_heads": 2, "dropout": 0.3}, batch=None, queries=3, keys=5,
            attn_mask="2d", training=True, average_attn_weights=False, name="GQA, dropout, unbatched"),
    MHACase({"embed_dim": 6, "num_heads": 3, "num_kv_heads": 1, "bias": False, "add_bias_kv": True},
            batch=2, queries=5, keys=3, is_causal=True, name="MQA, no bias, causal L > S"),
    MHACase({"embed_dim": 4, "num_heads": 2, "add_zero_attn": True, "dropout": 0.5, "vdim": 2}, batch=1,
            queries=2, keys=3, mask_kind="float", attn_mask="2d", is_causal=True, key_padding_mask=True,
            training=True, name="zero_attn, float causal mask + padding, dropout"),
]


def finite_difference_errors(module, inputs, kwargs, dout) -> dict[str, float]:
    """Relative errors of the analytic input and parameter gradients against central differences.

    The generator state is replayed before every forward, so each one draws the same dropout mask.
    """
    names = list(module.params)
    rng_state = module.rng.bit_generator.state
    module.zero_grad()
    module(*inputs, **kwargs)
    analytic = module.backward(dout)
    analytic = [analytic] if len(inputs) == 1 else list(analytic)
    analytic += [module.grads[name].copy() for name in names]

    def forward(*arrays):
        saved = dict(module.params)
        module.params.update(zip(names, arrays[len(inputs):]))
        module.rng.bit_generator.state = rng_state
        try:
            return module(*arrays[: len(inputs)], **kwargs)[0]
        finally:
            module.params.update(saved)

    numeric = numerical_gradients(forward, [*inputs, *module.params.values()], dout)
    labels = ["dx"] if len(inputs) == 1 else ["dquery", "dkey", "dvalue"]
    # Central differences resolve O(1) gradients to ~1e-9: below 1e-7 is 0 to them.
    return gradient_errors({label: (a, n) for label, a, n in zip(labels + names, analytic, numeric)}, zero=1e-7)


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: c.name)
def test_gradients_match_finite_differences(case):
    module, inputs, kwargs, dout = case.build()
    errors = finite_difference_errors(module, inputs, kwargs, dout)
    assert set(errors) >= set(module.params) - {"k_proj.bias"}
    assert max(errors.values()) < 1e-7, errors


def test_fully_masked_rows_give_the_output_bias_and_finite_gradients():
    case = MHACase({"embed_dim": 4, "num_heads": 2}, batch=2, queries=3, keys=4, key_padding_mask=True)
    module, inputs, kwargs, dout = case.build()
    kwargs["key_padding_mask"][1] = True  # batch entry 1 sees no key at all
    attn_mask = np.zeros((3, 4), dtype=bool)
    attn_mask[0] = True  # query 0 sees no key in any batch entry
    kwargs["attn_mask"] = attn_mask
    out, weights = module(*inputs, **kwargs)
    bias = module.params["out_proj.bias"]
    np.testing.assert_array_equal(out[1], np.broadcast_to(bias, (3, 4)))
    np.testing.assert_array_equal(out[0, 0], bias)
    assert not np.allclose(out[0, 1:], bias)
    assert not weights[1].any() and not weights[:, 0].any()
    errors = finite_difference_errors(module, inputs, kwargs, dout)
    assert max(errors.values()) < 1e-7, errors
    dquery, dkey, dvalue = module.backward(dout)
    assert not dkey[1].any() and not dvalue[1].any() and not dquery[1].any()
    assert all(np.isfinite(g).all() for g in module.grads.values())


def test_self_attention_returns_one_gradient_the_sum_of_three_paths(rng):
    module = MultiHeadAttention(6, 2, add_bias_kv=True, rng=0)
    x, dout = random_like(rng, (2, 5, 6)), random_like(rng, (2, 5, 6))
    out_self, _ = module(x)
    dx = module.backward(dout)
    self_grads = {k: g.copy() for k, g in module.grads.items()}
    module.zero_grad()
    out_cross, _ = module(x, x, x)
    dquery, dkey, dvalue = module.backward(dout)
    assert isinstance(dx, np.ndarray) and dx.shape == x.shape
    np.testing.assert_array_equal(out_self, out_cross)
    assert rel_error(dx, dquery + dkey + dvalue) < 1e-15
    assert min(rel_error(dx, d) for d in (dquery, dkey, dvalue)) > 1e-3  # all three paths count
    for name, grad in module.grads.items():
        assert rel_error(self_grads[name], grad) < 1e-15, name


def test_gradients_accumulate_over_two_backwards_and_zero_grad_clears(rng):
    module = MultiHeadAttention(4, 2, add_bias_kv=True, kdim=3, rng=0)
    query, key, value = random_like(rng, (2, 3, 4)), random_like(rng, (2, 5, 3)), random_like(rng, (2, 5, 4))
    douts = random_like(rng, (2, 2, 3, 4))
    singles = []
    for dout in douts:
        module.zero_grad()
        module(query, key, value)
        module.backward(dout)
        singles.append({k: g.copy() for k, g in module.grads.items()})
    module.zero_grad()
    for dout in douts:
        module(query, key, value)
        module.backward(dout)
    for name, grad in module.grads.items():
        assert rel_error(grad, singles[0][name] + singles[1][name]) < 1e-14, name
        assert rel_error(grad, singles[0][name]) > 1e-3, name
    module.zero_grad()
    assert not any(g.any() for g in module.grads.values())


def test_parameters_are_named_and_shaped_as_the_spec_says():
    packed = MultiHeadAttention(8, 4, add_bias_kv=True, num_kv_heads=2, rng=0)
    assert {k: v.shape for k, v in packed.params.items()} == {
        "q_proj.weight": (8, 8), "q_proj.bias": (8,), "k_proj.weight": (4, 8), "k_proj.bias": (4,),
        "v_proj.weight": (4, 8), "v_proj.bias": (4,), "out_proj.weight": (8, 8), "out_proj.bias": (8,),
        "bias_k": (1, 1, 4), "bias_v": (1, 1, 4),
    }
    assert set(packed.grads) == set(packed.params) and not any(g.any() for g in packed.grads.values())
    separate = MultiHeadAttention(6, 2, bias=False, kdim=3, vdim=5, dtype=np.float32, rng=0)
    assert {k: v.shape for k, v in separate.params.items()} == {
        "q_proj.weight": (6, 6), "k_proj.weight": (6, 3), "v_proj.weight": (6, 5), "out_proj.weight": (6, 6),
    }
    assert all(v.dtype == np.float32 for v in separate.params.values())


def test_init_bounds_follow_torch():
    embed = 64
    packed = MultiHeadAttention(embed, 4, rng=0)
    in_proj = np.concatenate([packed.params[f"{n}_proj.weight"] for n in "qkv"])
    bound = np.sqrt(6 / (embed + 3 * embed))  # xavier-uniform over the packed (3E, E) matrix
    assert bound * 0.999 < np.abs(in_proj).max() <= bound
    out_bound = 1 / np.sqrt(embed)
    assert out_bound * 0.99 < np.abs(packed.params["out_proj.weight"]).max() <= out_bound
    assert not packed.params["q_proj.bias"].any() and not packed.params["out_proj.bias"].any()
    separate = MultiHeadAttention(embed, 4, kdim=16, rng=0)
    k_bound = np.sqrt(6 / (embed + 16))
    assert k_bound * 0.99 < np.abs(separate.params["k_proj.weight"]).max() <= k_bound
    bias_k = MultiHeadAttention(256, 4, add_bias_kv=True, rng=0).params["bias_k"]
    assert abs(bias_k.std() * np.sqrt(256) - 1) < 0.15  # xavier-normal: std 1/sqrt(E)


def test_layouts_agree(rng):
    """batch_first=False is the transpose of batch_first=True; unbatched is a batch of one."""
    first = MultiHeadAttention(4, 2, add_zero_attn=True, rng=0)
    second = MultiHeadAttention(4, 2, add_zero_attn=True, batch_first=False, rng=0)
    query, key = random_like(rng, (2, 3, 4)), random_like(rng, (2, 5, 4))
    attn_mask = rng.random((3, 5)) < 0.3
    out_first, w_first = first(query, key, key, attn_mask=attn_mask)
    out_second, w_second = second(query.swapaxes(0, 1), key.swapaxes(0, 1), key.swapaxes(0, 1), attn_mask=attn_mask)
    np.testing.assert_allclose(out_second, out_first.swapaxes(0, 1), rtol=1e-14)
    np.testing.assert_allclose(w_second, w_first, rtol=1e-14)
    dout = random_like(rng, out_first.shape)
    grads_first = first.backward(dout)
    grads_second = second.backward(dout.swapaxes(0, 1))
    for a, b in zip(grads_first, grads_second):
        np.testing.assert_allclose(b, a.swapaxes(0, 1), rtol=1e-13, atol=1e-15)
    out_single, w_single = first(query[1], key[1], key[1], attn_mask=attn_mask, average_attn_weights=False)
    assert out_single.shape == (3, 4) and w_single.shape == (2, 3, 6)
    np.testing.assert_allclose(out_single, out_first[1], rtol=1e-14)


def test_weight_shapes_follow_torch(rng):
    module = MultiHeadAttention(6, 3, add_bias_kv=True, add_zero_attn=True, rng=0)
    query, key = random_like(rng, (2, 4, 6)), random_like(rng, (2, 5, 6))
    _, averaged = module(query, key, key)
    _, per_head = module(query, key, key, average_attn_weights=False)
    _, none = module(query, key, key, need_weights=False)
    assert averaged.shape == (2, 4, 7) and per_head.shape == (2, 3, 4, 7) and none is None
    np.testing.assert_allclose(per_head.mean(axis=1), averaged, rtol=1e-14)
    np.testing.assert_allclose(per_head.sum(axis=-1), 1.0, rtol=1e-14)


def test_dropout_only_in_training_and_weights_carry_it(rng):
    module = MultiHeadAttention(4, 2, dropout=0.5, rng=0)
    reference = MultiHeadAttention(4, 2, rng=0)
    x = random_like(rng, (2, 6, 4))
    out_train, weights_train = module(x, average_attn_weights=False)
    keep = module._cache.attention.dropout_mask
    assert keep is not None and 0 < keep.mean() < 1
    np.testing.assert_allclose(weights_train, module._cache.attention.weights * keep * 2, rtol=1e-15)
    module.eval()
    out_eval, weights_eval = module(x)
    assert module._cache.attention.dropout_mask is None
    expected, expected_weights = reference(x)
    np.testing.assert_array_equal(out_eval, expected)
    np.testing.assert_array_equal(weights_eval, expected_weights)
    assert not np.allclose(out_train, out_eval)


def test_float32_stays_float32(rng):
    module = MultiHeadAttention(4, 2, add_bias_kv=True, num_kv_heads=1, dtype=np.float32, rng=0)
    x = random_like(rng, (2, 3, 4), np.float32)
    out, weights = module(x, key_padding_mask=np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -np.inf]]))
    dx = module.backward(random_like(rng, out.shape, np.float32))
    assert out.dtype == weights.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in module.grads.values())


def test_integer_input_is_converted_and_inputs_are_not_mutated(rng):
    module = MultiHeadAttention(4, 2, rng=0)
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    out_int, _ = module(x)
    out_float, _ = module(x.astype(np.float64))
    np.testing.assert_array_equal(out_int, out_float)
    query, key = random_like(rng, (2, 3, 4)), random_like(rng, (2, 5, 4))
    mask = rng.random((2, 5)) < 0.3
    frozen = [a.copy() for a in (query, key, mask)]
    for a in (query, key, mask):
        a.setflags(write=False)
    out, _ = module(query, key, key, key_padding_mask=mask)
    dout = random_like(rng, out.shape)
    dout.setflags(write=False)
    module.backward(dout)
    for a, b in zip((query, key, mask), frozen):
        np.testing.assert_array_equal(a, b)


def test_is_causal_alone_equals_the_causal_mask(rng):
    module = MultiHeadAttention(4, 2, add_bias_kv=True, rng=0)
    query, key = random_like(rng, (2, 3, 4)), random_like(rng, (2, 5, 4))
    causal = np.triu(np.ones((3, 5), dtype=bool), k=1)
    out_flag, w_flag = module(query, key, key, is_causal=True)
    out_mask, w_mask = module(query, key, key, attn_mask=causal)
    out_both, _ = module(query, key, key, attn_mask=causal, is_causal=True)
    np.testing.assert_array_equal(out_flag, out_mask)
    np.testing.assert_array_equal(out_flag, out_both)
    np.testing.assert_array_equal(w_flag, w_mask)
    assert (w_flag[:, :, -1] > 0).all()  # the bias_k key stays visible to every query


class NoWeightsCache(NamedTuple):
    """Like the flash cache: no ``weights`` attribute."""

    naive: AttentionCache


def test_impl_runs_when_weights_are_not_needed(rng, monkeypatch):
    calls = []

    def counted_forward(*args, **kwargs):
        calls.append("forward")
        out, cache = attention_forward(*args, **kwargs)
        return out, NoWeightsCache(cache)

    def counted_backward(dout, cache):
        calls.append("backward")
        return attention_backward(dout, cache.naive)

    monkeypatch.setitem(ATTENTION_IMPLS, "counted", (counted_forward, counted_backward))
    module = MultiHeadAttention(4, 2, dropout=0.2, impl="counted", rng=0)
    naive = MultiHeadAttention(4, 2, dropout=0.2, rng=0)
    x, dout = random_like(rng, (2, 3, 4)), random_like(rng, (2, 3, 4))
    out, weights = module(x, need_weights=False)
    assert weights is None and calls == ["forward"]
    expected, _ = naive(x, need_weights=False)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(module.backward(dout), naive.backward(dout))
    assert calls == ["forward", "backward"]
    out, weights = module(x)  # need_weights=True: the naive pair, which returns the weights
    module.backward(dout)
    assert weights is not None and calls == ["forward", "backward"]
    np.testing.assert_array_equal(out, naive(x)[0])


def test_flash_impl_equals_naive(rng):
    flash = MultiHeadAttention(8, 4, num_kv_heads=2, add_bias_kv=True, impl="flash", rng=0)
    naive = MultiHeadAttention(8, 4, num_kv_heads=2, add_bias_kv=True, rng=0)
    query, key = random_like(rng, (2, 5, 8)), random_like(rng, (2, 7, 8))
    mask = rng.random((2, 7)) < 0.3
    out, weights = flash(query, key, key, key_padding_mask=mask, need_weights=False)
    expected, _ = naive(query, key, key, key_padding_mask=mask, need_weights=False)
    assert weights is None and rel_error(out, expected) < 1e-12
    dout = random_like(rng, out.shape)
    for a, b in zip(flash.backward(dout), naive.backward(dout)):
        assert rel_error(a, b) < 1e-12
    for name in naive.grads:
        assert rel_error(flash.grads[name], naive.grads[name]) < 1e-12, name


def test_multi_head_attention_example(tmp_path):
    pytest.importorskip("matplotlib", reason="the example draws with matplotlib: pip install matplotlib")
    stdout = run_example("multi_head_attention.py", tmp_path)
    assert_png(tmp_path / "multi_head_attention_weights.png")
    x = np.array([[[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]]], dtype=np.float64)
    module = MultiHeadAttention(4, 2, rng=0)  # the example's seeded weights
    out, weights = module(x, average_attn_weights=False)
    np.testing.assert_allclose(printed_matrix(stdout, "multi-head attention output"), out[0], atol=6e-5)
    for head in range(2):
        printed = printed_matrix(stdout, f"head {head + 1} attention weights")
        np.testing.assert_allclose(printed, weights[0, head], atol=6e-5)
        np.testing.assert_allclose(printed.sum(axis=1), 1.0, atol=2e-4)
    assert not np.allclose(weights[0, 0], weights[0, 1], atol=1e-2)  # the heads attend differently

    # The printed dX equals finite differences of the module's forward, to the printed decimals.
    dout = printed_matrix(stdout, "upstream gradient dOut")[None]
    (expected,) = numerical_gradients(lambda x: module(x)[0], [x], dout)
    np.testing.assert_allclose(printed_matrix(stdout, "dX = dX_q + dX_k + dX_v"), expected[0], atol=6e-5)

    parity = re.findall(r"^  (.+): (\S+)$", stdout.split("torch.nn.MultiheadAttention", 1)[-1], re.MULTILINE)
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "pip install 'numpy_attention[torch]'" in stdout
    else:
        assert len(parity) == 5 and all(float(error) < 1e-10 for _, error in parity), parity


def test_save_and_load_restore_every_parameter(tmp_path, rng):
    saved = MultiHeadAttention(6, 3, add_bias_kv=True, num_kv_heads=1, kdim=2, rng=0)
    saved.save(tmp_path / "mha.npz")
    loaded = MultiHeadAttention(6, 3, add_bias_kv=True, num_kv_heads=1, kdim=2, rng=1)
    query, key = random_like(rng, (2, 3, 6)), random_like(rng, (2, 4, 2))
    value = random_like(rng, (2, 4, 6))
    assert not np.allclose(loaded(query, key, value)[0], saved(query, key, value)[0])
    loaded.load(tmp_path / "mha.npz")
    np.testing.assert_array_equal(loaded(query, key, value)[0], saved(query, key, value)[0])
    with pytest.raises(ValueError, match=r"missing \['bias_k', 'bias_v'\]"):
        loaded.load_state_dict(
            {k: v for k, v in saved.state_dict().items() if not k.startswith("bias_")}
        )

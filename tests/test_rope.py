"""RoPE: finite differences, torch twins of both layouts, Hugging Face's own code when installed."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch
from helpers.rope_twins import torch_twin

import gradcheck
from numpy_attention.functional import rope_backward, rope_forward
from numpy_attention.functional.rope import rope_angles

LAYOUTS = pytest.mark.parametrize("interleaved", [False, True], ids=["half-split", "interleaved"])


def run_torch(twin, x, positions, base, dout):
    torch = require_torch()
    x_t = torch.tensor(x, requires_grad=True)
    out_t = twin(x_t, positions, base)
    out_t.backward(torch.tensor(dout))
    return out_t.detach().numpy(), x_t.grad.numpy()


@LAYOUTS
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 6, 8), (1, 7, 2)])
def test_rope_gradients_match_finite_differences(interleaved, shape):
    x = random_like(np.random.default_rng(3), shape)
    positions = np.random.default_rng(4).integers(-50, 50, shape[-2])
    forward = lambda x: rope_forward(x, positions, base=100.0, interleaved=interleaved)  # noqa: E731
    report = gradcheck.check(forward, rope_backward, (x,))
    assert report.passed, str(report)


@LAYOUTS
@pytest.mark.parametrize("positions, base", [(None, 10000.0), ("random", 500000.0), ("large", 10000.0)],
                         ids=["default", "random-llama3-base", "1e5"])
def test_rope_matches_torch_twins(rng, interleaved, positions, base):
    x = 10 * random_like(rng, (2, 3, 6, 16))  # large values as well
    if positions == "random":
        positions = rng.integers(-1000, 1000, 6)
    elif positions == "large":
        positions = 100_000 + np.arange(6)
    dout = random_like(rng, x.shape)
    out, cache = rope_forward(x, positions, base=base, interleaved=interleaved)
    expected_out, expected_dx = run_torch(torch_twin(interleaved), x, np.arange(6) if positions is None else positions,
                                          base, dout)
    assert rel_error(out, expected_out) < 1e-10
    assert rel_error(rope_backward(dout, cache), expected_dx) < 1e-10


def test_the_two_layouts_differ_and_are_a_permutation_apart(rng):
    """HF's half-split layout is Meta's interleaved one after permuting the features: (0, 2, 4, ..., 1, 3, 5, ...)."""
    x = random_like(rng, (3, 5, 8))
    half, _ = rope_forward(x, interleaved=False)
    interleaved, _ = rope_forward(x, interleaved=True)
    assert rel_error(half, interleaved) > 0.1
    to_half = np.r_[0:8:2, 1:8:2]  # interleaved feature index of each half-split feature
    permuted, _ = rope_forward(x[..., to_half], interleaved=False)
    assert rel_error(permuted, interleaved[..., to_half]) < 1e-15


@LAYOUTS
def test_rope_keeps_norms_and_depends_on_position_differences_only(rng, interleaved):
    q, k = random_like(rng, (4, 8)), random_like(rng, (4, 8))

    def scores(shift):
        rq, _ = rope_forward(q, np.arange(4) + shift, interleaved=interleaved)
        rk, _ = rope_forward(k, np.arange(4) + shift, interleaved=interleaved)
        return rq @ rk.T

    rq, _ = rope_forward(q, interleaved=interleaved)
    assert rel_error(np.linalg.norm(rq, axis=-1), np.linalg.norm(q, axis=-1)) < 1e-14
    assert rel_error(scores(-37), scores(0)) < 1e-12 and rel_error(scores(1000), scores(0)) < 1e-11


def test_rope_at_position_zero_is_the_identity_and_backward_inverts_forward(rng):
    x = random_like(rng, (2, 3, 6))
    out, _ = rope_forward(x, np.zeros(3, dtype=np.int64))
    np.testing.assert_array_equal(out, x)
    out, cache = rope_forward(x, np.array([5, -2, 90000]), interleaved=True)
    assert rel_error(rope_backward(out, cache), x) < 1e-14  # R^T R = I


@LAYOUTS
def test_rope_float32_stays_float32_and_is_accurate_at_large_positions(rng, interleaved):
    x = random_like(rng, (2, 4, 8))
    positions = np.array([0, 1, 65_535, 100_000])
    out64, _ = rope_forward(x, positions, interleaved=interleaved)
    out32, cache = rope_forward(x.astype(np.float32), positions, interleaved=interleaved)
    dx32 = rope_backward(random_like(rng, out32.shape, np.float32), cache)
    assert out32.dtype == np.float32 and dx32.dtype == np.float32
    assert rel_error(out32, out64) < 1e-6  # the angles are float64: only float32 rounding of the product
    int_out, _ = rope_forward(np.arange(16).reshape(2, 8), interleaved=interleaved)
    assert int_out.dtype == np.float64


def test_rope_does_not_touch_its_inputs_and_returns_fresh_arrays(rng):
    x, dout = random_like(rng, (3, 4)), random_like(rng, (3, 4))
    x_copy, dout_copy = x.copy(), dout.copy()
    out, cache = rope_forward(x, [2, 0, 1])
    dx = rope_backward(dout, cache)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    for array in (out, dx):
        assert not any(np.shares_memory(array, other) for other in (x, dout, cache.cos, cache.sin))


def test_rope_angles_follow_the_published_frequencies():
    theta = rope_angles(np.array([3]), 8, 10000.0)
    assert rel_error(theta, 3 * 10000.0 ** (-np.array([[0, 2, 4, 6]]) / 8)) < 1e-15


def test_rope_rejects_bad_input():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"x must be.*even.*\(2, 3, 5\)"):
        rope_forward(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"x must be.*\(4,\)"):
        rope_forward(np.zeros(4))
    with pytest.raises(TypeError, match=r"positions must have an integer dtype.*float64"):
        rope_forward(x, np.arange(3.0))
    with pytest.raises(TypeError, match=r"positions.*bool"):
        rope_forward(x, np.ones(3, bool))
    with pytest.raises(ValueError, match=r"positions must have shape \(3,\).*\(4,\)"):
        rope_forward(x, np.arange(4))
    with pytest.raises(ValueError, match=r"positions must have shape \(3,\).*\(1, 3\)"):
        rope_forward(x, np.arange(3)[None])
    with pytest.raises(TypeError, match="positions"):
        rope_forward(x, "012")
    for base in (0.0, -10000.0):
        with pytest.raises(ValueError, match=rf"base must be a positive.*{base}"):
            rope_forward(x, base=base)
    with pytest.raises(ValueError, match="base must be finite"):
        rope_forward(x, base=np.inf)
    with pytest.raises(TypeError, match="interleaved must be a bool"):
        rope_forward(x, interleaved=1)
    with pytest.raises(TypeError, match="x must"):
        rope_forward(x.astype(complex))
    _, cache = rope_forward(x)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3, 4\)"):
        rope_backward(np.zeros((3, 4)), cache)
    with pytest.raises(TypeError, match="cache must be the RopeCache"):
        rope_backward(np.zeros((2, 3, 4)), (cache.cos, cache.sin))


# --- the reference implementations themselves, when installed ---------------------------------

def hugging_face():
    require_torch()
    return pytest.importorskip("transformers", reason="pip install transformers to check against its rotary code")


@LAYOUTS
def test_rope_matches_hugging_face_rotary_functions(rng, interleaved):
    """Llama's ``apply_rotary_pos_emb`` (rotate_half) and GPT-J's (rotate_every_two), given our float64 angles."""
    hugging_face()
    import torch
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_rotary
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_rotary

    q, k = 3 * random_like(rng, (2, 3, 5, 8)), random_like(rng, (2, 3, 5, 8))
    positions = rng.integers(0, 5000, 5)
    theta = torch.tensor(rope_angles(positions, 8, 10000.0))[None]  # (1, L, D/2)
    tensors = [torch.tensor(a, requires_grad=True) for a in (q, k)]
    if interleaved:  # GPT-J wants (B, L, H, D) and the (B, L, D/2) angles
        outs = [gptj_rotary(t.transpose(1, 2), theta.sin(), theta.cos()).transpose(1, 2) for t in tensors]
    else:
        emb = torch.cat([theta, theta], -1)
        outs = list(llama_rotary(*tensors, emb.cos(), emb.sin()))
    for array, tensor, out_t in zip((q, k), tensors, outs):
        dout = random_like(rng, array.shape)
        out_t.backward(torch.tensor(dout))
        out, cache = rope_forward(array, positions, interleaved=interleaved)
        assert rel_error(out, out_t.detach().numpy()) < 1e-12
        assert rel_error(rope_backward(dout, cache), tensor.grad.numpy()) < 1e-12


def test_rope_frequencies_match_hugging_face_llama_rotary_embedding(rng):
    """LlamaRotaryEmbedding's cos/sin agree with ours to the rounding of HF's float32 angles.

    HF multiplies position by frequency in float32: each angle is off by up to a few float32 ulps
    of itself, about max(positions) * 2**-23 radians, and so are its cosine and sine.
    """
    hugging_face()
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_parameters={"rope_type": "default",
                                                                                  "rope_theta": 500000.0})
    positions = np.array([0, 1, 7, 100, 2047])
    cos_t, sin_t = LlamaRotaryEmbedding(config)(torch.zeros(1, dtype=torch.float32),
                                                torch.as_tensor(positions)[None])
    _, cache = rope_forward(np.zeros((5, 16)), positions, base=500000.0)
    bound = positions.max() * 2.0**-23
    assert np.abs(np.concatenate([cache.cos] * 2, -1) - cos_t[0].numpy()).max() < bound
    assert np.abs(np.concatenate([cache.sin] * 2, -1) - sin_t[0].numpy()).max() < bound

"""The Llama-style configuration of the GPT (RMSNorm, RoPE, SwiGLU, GQA, no biases) against a torch twin."""

import numpy as np
import pytest
from helpers.gpt_twin import as_numpy, assert_matches_twin, batch, load_ours_into, make_twin, nanogpt_groups
from helpers.numerics import rel_error, require_torch

import gradcheck
from numpy_attention import clip_grad_norm
from numpy_attention.models import GPT

BASE = dict(vocab_size=13, block_size=8, n_layer=2, n_head=4, n_embd=16)
LLAMA = dict(n_kv_head=2, norm="rms", position="rope", mlp="swiglu", bias=False)
CONFIGS = {
    "llama": LLAMA,
    "mqa-rope-bias": dict(n_kv_head=1, position="rope", bias=True),
    "rms-swiglu": dict(norm="rms", mlp="swiglu"),
    "rope-base-500": dict(position="rope", rope_base=500.0, bias=False),
}


def _model(options, seed=0, **extra):
    model = GPT(**BASE, **options, **extra, rng=np.random.default_rng(seed))
    for name, value in model.params.items():  # non-trivial norm weights and biases
        if name.endswith("bias") or "ln_" in name:
            value += 0.1 * np.random.default_rng(len(name)).standard_normal(value.shape)
    return model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_loss_and_every_gradient_match_the_torch_twin(name):
    torch = require_torch()
    options = CONFIGS[name]
    model = _model(options)
    twin = make_twin(torch, **BASE, **options)
    load_ours_into(torch, twin, model)
    idx, targets = batch(np.random.default_rng(1), 13, (3, 7), ignored=3)
    assert_matches_twin(torch, model, twin, idx, targets)


def test_llama_parameters_are_what_the_options_say():
    model = _model(LLAMA)
    assert "transformer.wpe.weight" not in model.params
    assert not any(name.endswith(".bias") for name in model.params)
    assert model.params["transformer.h.0.attn.c_attn.weight"].shape == ((4 + 2 * 2) * 4, 16)
    assert model.params["transformer.h.1.mlp.c_gate.weight"].shape == (64, 16)
    assert "position='rope'" in repr(model) and "n_kv_head=2" in repr(model)


def test_five_adamw_steps_match_torch():
    torch = require_torch()
    model = _model(LLAMA, seed=7)
    twin = make_twin(torch, **BASE, **LLAMA)
    load_ours_into(torch, twin, model)
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-2, betas=(0.9, 0.95))
    reference = torch.optim.AdamW(nanogpt_groups(twin, 0.1), lr=3e-2, betas=(0.9, 0.95))
    rng = np.random.default_rng(8)
    for _ in range(5):
        idx, targets = batch(rng, 13, (4, 8))
        _, loss = model(idx, targets)
        model.backward()
        clip_grad_norm(model, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        _, ref_loss = twin(torch.tensor(idx), torch.tensor(targets))
        ref_loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        reference.step()
        reference.zero_grad()
        assert float(loss) == pytest.approx(ref_loss.item(), rel=1e-10)
    for key, param in twin.named_parameters():
        assert rel_error(model.params[key], as_numpy(param)) < 1e-10, key


def test_check_module_on_a_tiny_llama():
    model = GPT(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=4, **LLAMA, rng=0)
    for value in model.params.values():
        value += 0.5 * np.random.default_rng(value.size).standard_normal(value.shape)
    report = gradcheck.check_module(model, np.array([[1, 3, 0, 2], [4, 4, 1, 0]]))
    assert report.passed, report


def test_kv_cache_equals_the_full_forward_and_generates_the_same_tokens():
    model = _model(LLAMA)
    for value in model.params.values():
        value += 0.3 * np.random.default_rng(value.size).standard_normal(value.shape)
    tokens = np.random.default_rng(2).integers(0, 13, (2, 8))
    logits, cache = model.decode(tokens[:, :3])
    assert cache.keys[0].shape == (2, 2, 8, 4)  # the k/v heads only
    assert rel_error(logits, model.forward(tokens[:, :3])[0]) < 1e-12
    for t in range(3, 8):
        logits, cache = model.decode(tokens[:, t : t + 1], cache)
        assert rel_error(logits, model.forward(tokens[:, : t + 1])[0][:, -1:]) < 1e-12, t
    prompt = tokens[:, :2]
    cached = model.generate(prompt, 20, top_k=5, rng=np.random.default_rng(3))
    plain = model.generate(prompt, 20, top_k=5, rng=np.random.default_rng(3), kv_cache=False)
    np.testing.assert_array_equal(cached, plain)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        GPT(**BASE, n_kv_head=3)
    with pytest.raises(ValueError, match="even head_dim"):
        GPT(13, 8, 1, 4, 12, position="rope")
    with pytest.raises(ValueError, match="norm"):
        GPT(**BASE, norm="batch")
    with pytest.raises(ValueError, match="position"):
        GPT(**BASE, position="alibi")
    with pytest.raises(ValueError, match="mlp"):
        GPT(**BASE, mlp="relu")

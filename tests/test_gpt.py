"""The numpy GPT against a torch twin of nanoGPT: logits, loss, every gradient, five AdamW steps."""

import numpy as np
import pytest
from helpers.gpt_twin import as_numpy, assert_matches_twin, batch, load_ours_into, make_twin, nanogpt_groups
from helpers.numerics import rel_error, require_torch

from numpy_attention import clip_grad_norm
from numpy_attention.models import GPT

CONFIG = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("T", [8, 5])
def test_logits_loss_and_every_gradient_match_the_torch_twin(bias, T):
    torch = require_torch()
    model = GPT(**CONFIG, bias=bias, rng=np.random.default_rng(0))
    for name, value in model.params.items():  # non-trivial LayerNorm and bias values too
        if name.endswith("bias") or "ln_" in name:
            value += 0.1 * np.random.default_rng(len(name)).standard_normal(value.shape)
    twin = make_twin(torch, **CONFIG, bias=bias)
    load_ours_into(torch, twin, model)
    idx, targets = batch(np.random.default_rng(1), 13, (3, T), ignored=4)
    assert_matches_twin(torch, model, twin, idx, targets)


def test_logits_without_targets_cover_every_position_and_match():
    torch = require_torch()
    model = GPT(**CONFIG, rng=3)
    twin = make_twin(torch, **CONFIG)
    load_ours_into(torch, twin, model)
    idx = np.random.default_rng(4).integers(0, 13, (2, 6))
    logits, loss = model(idx)
    assert loss is None and logits.shape == (2, 6, 13)
    assert rel_error(logits, as_numpy(twin(torch.tensor(idx))[0])) < 1e-10


def test_a_torch_initialised_state_dict_loads_and_runs():
    torch = require_torch()
    torch.manual_seed(0)
    twin = make_twin(torch, **CONFIG, bias=False)
    model = GPT(**CONFIG, bias=False, rng=9)
    model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    idx, targets = batch(np.random.default_rng(5), 13, (2, 8))
    logits, loss = model(idx, targets)
    ref_logits, ref_loss = twin(torch.tensor(idx), torch.tensor(targets))
    assert rel_error(logits, as_numpy(ref_logits)) < 1e-10
    assert float(loss) == pytest.approx(ref_loss.item(), rel=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_five_adamw_steps_with_nanogpts_grouping_and_clipping_match_torch(bias):
    torch = require_torch()
    model = GPT(**CONFIG, bias=bias, rng=np.random.default_rng(7))
    twin = make_twin(torch, **CONFIG, bias=bias)
    load_ours_into(torch, twin, model)
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-2, betas=(0.9, 0.95))
    reference = torch.optim.AdamW(nanogpt_groups(twin, 0.1), lr=3e-2, betas=(0.9, 0.95))
    rng = np.random.default_rng(8)
    for _ in range(5):
        idx, targets = batch(rng, 13, (4, 8), ignored=3)
        _, loss = model(idx, targets)
        model.backward()
        norm = clip_grad_norm(model, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        _, ref_loss = twin(torch.tensor(idx), torch.tensor(targets))
        ref_loss.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        reference.step()
        reference.zero_grad()
        assert float(loss) == pytest.approx(ref_loss.item(), rel=1e-10)
        assert norm == pytest.approx(ref_norm.item(), rel=1e-10)
    for name, param in twin.named_parameters():
        assert rel_error(model.params[name], as_numpy(param)) < 1e-10, name
    assert not np.allclose(model.params["transformer.wte.weight"], model.state_dict()["lm_head.weight"] + 1)


def test_configure_optimizers_decays_exactly_the_matrices():
    model = GPT(**CONFIG, rng=0)
    optimizer = model.configure_optimizers(0.25, 1e-3, (0.9, 0.95))
    decayed = {name for (_, name), wd in optimizer.decay.items() if wd == 0.25}
    assert decayed == {name for name, p in model.params.items() if p.ndim >= 2}
    assert len(optimizer.decay) == len(model.params)
    assert optimizer.lr == 1e-3 and optimizer.betas == (0.9, 0.95)


def test_initialisation_follows_nanogpt():
    model = GPT(vocab_size=300, block_size=64, n_layer=4, n_head=4, n_embd=64, rng=0)
    params = model.params
    assert abs(params["transformer.wte.weight"].std() - 0.02) < 0.001
    assert abs(params["transformer.h.1.attn.c_attn.weight"].std() - 0.02) < 0.001
    assert abs(params["transformer.h.2.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(8)) < 0.0005
    assert abs(params["transformer.h.0.attn.c_proj.weight"].std() - 0.02 / np.sqrt(8)) < 0.0005
    assert not params["transformer.h.3.mlp.c_fc.bias"].any() and (params["transformer.ln_f.weight"] == 1).all()
    assert model.num_params() == sum(p.size for p in params.values())
    assert GPT(**CONFIG, dtype=np.float32, rng=0).params["transformer.wpe.weight"].dtype == np.float32

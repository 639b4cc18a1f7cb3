"""A large batch runs as shards of rows, one per core (schedule.batch_shards): the same model, to rounding."""

import contextlib

import numpy as np
import pytest
from helpers.gpt_twin import assert_matches_twin, batch, load_ours_into, make_twin
from helpers.numerics import rel_error, require_torch

from numpy_attention.kernels import schedule
from numpy_attention.models import GPT

CONFIG = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)


@pytest.fixture
def shards(monkeypatch):
    """Shard every batch across three workers, on real helper threads; returns the shard counts seen."""
    seen = []
    monkeypatch.setattr(schedule, "PARALLEL_MIN_ACTIVATIONS", 1)
    monkeypatch.setattr(schedule, "blas_threads", lambda: 3)
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (3, contextlib.nullcontext()))
    real = schedule.batch_shards

    def counted(*args):
        cut = real(*args)
        seen.append(len(cut))
        return cut

    monkeypatch.setattr(schedule, "batch_shards", counted)
    return seen


def step(model, idx, targets=None, dlogits=None):
    model.zero_grad()
    logits, loss = model(idx, targets)
    model.backward(dlogits)
    return logits, loss, {name: grad.copy() for name, grad in model.grads.items()}, model.attention_weights()


def test_batch_shards_split_the_rows_evenly_and_only_when_worthwhile(monkeypatch):
    monkeypatch.setattr(schedule, "blas_threads", lambda: 3)
    big = schedule.PARALLEL_MIN_ACTIVATIONS
    assert schedule.batch_shards(8, big) == [slice(0, 2), slice(2, 5), slice(5, 8)]
    assert schedule.batch_shards(2, big) == [slice(0, 1), slice(1, 2)]  # at most one shard per row
    assert schedule.batch_shards(8, big - 1) == [slice(0, 8)]
    assert schedule.batch_shards(1, big) == [slice(0, 1)]
    monkeypatch.setattr(schedule, "blas_threads", lambda: 1)
    assert schedule.batch_shards(8, big) == [slice(0, 8)]


def test_sharded_step_matches_the_torch_twin(shards):
    torch = require_torch()
    model = GPT(**CONFIG, rng=np.random.default_rng(0))
    twin = make_twin(torch, **CONFIG)
    load_ours_into(torch, twin, model)
    idx, targets = batch(np.random.default_rng(1), 13, (5, 8), ignored=6)
    assert_matches_twin(torch, model, twin, idx, targets)
    assert shards and set(shards) == {3}


@pytest.mark.parametrize("ignored", ["some", "one shard", "all"])
def test_sharded_step_equals_the_whole_batch(shards, monkeypatch, ignored):
    """Logits and attention weights row for row, the loss and every gradient to rounding; a shard
    without any target (or a batch without any) gives what the whole batch gives."""
    model = GPT(**CONFIG, n_kv_head=1, position="rope", rng=np.random.default_rng(2))
    idx, targets = batch(np.random.default_rng(3), 13, (7, 8), ignored=10)
    targets[:2] = -1 if ignored == "one shard" else targets[:2]
    targets[:] = -1 if ignored == "all" else targets
    sharded = step(model, idx, targets)
    monkeypatch.setattr(schedule, "PARALLEL_MIN_ACTIVATIONS", 1 << 60)
    whole = step(model, idx, targets)
    assert shards[0] == 3 and shards[-1] == 1
    assert rel_error(sharded[0], whole[0]) < 1e-14
    if ignored == "all":
        assert np.isnan(sharded[1]) and np.isnan(whole[1])
    else:
        assert sharded[1].dtype == whole[1].dtype and abs(sharded[1] - whole[1]) <= 1e-14 * abs(whole[1])
    for name in whole[2]:
        assert np.all(np.isfinite(sharded[2][name])), name
        assert rel_error(sharded[2][name], whole[2][name]) < 1e-12, name
    for a, b in zip(sharded[3], whole[3]):
        assert a.shape == b.shape and rel_error(a, b) < 1e-14


def test_sharded_backward_of_given_dlogits(shards, monkeypatch):
    model = GPT(**CONFIG, dtype=np.float32, rng=np.random.default_rng(4))
    idx = np.random.default_rng(5).integers(0, 13, (4, 6))
    dlogits = np.random.default_rng(6).standard_normal((4, 6, 13)).astype(np.float32)
    sharded = step(model, idx, dlogits=dlogits)
    monkeypatch.setattr(schedule, "PARALLEL_MIN_ACTIVATIONS", 1 << 60)
    whole = step(model, idx, dlogits=dlogits)
    for name in whole[2]:
        assert sharded[2][name].dtype == np.float32 and rel_error(sharded[2][name], whole[2][name]) < 1e-5, name
    model(idx)
    with pytest.raises(ValueError, match=r"dlogits must have .* shape \(4, 6, 13\); got \(3, 6, 13\)"):
        model.backward(dlogits[:3])
    with pytest.raises(ValueError, match="dlogits"):
        model.backward(dlogits[..., :12])


def test_dropout_keeps_one_shard_and_its_draws_in_order(shards):
    runs = []
    for _ in range(2):
        model = GPT(**CONFIG, dropout=0.2, rng=np.random.default_rng(7))
        idx, targets = batch(np.random.default_rng(8), 13, (6, 8))
        runs.append(step(model, idx, targets))
        assert model.saved_cache()[0] == [slice(0, 6)]
    assert not shards  # not even asked
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for name in runs[0][2]:
        np.testing.assert_array_equal(runs[0][2][name], runs[1][2][name])


def test_a_second_caller_runs_in_turn_and_leaves_blas_as_it_was():
    """threadpoolctl caps BLAS when its limiter is made: a caller that does not get the lock must not make one."""
    pytest.importorskip("threadpoolctl", reason="the BLAS cap needs threadpoolctl")
    before = schedule.blas_threads()
    if before < 2:
        pytest.skip("BLAS runs one thread here: there is no cap to leave behind")
    with schedule._parallel_lock:  # another caller's parallel region
        ran = []
        schedule.run_chunks(ran.append, [0, 1, 2], parallel=True)
    assert ran == [0, 1, 2] and schedule.blas_threads() == before

"""GPT.decode / generate with a KV cache: the same logits as the full forward at every step, the same tokens."""

import numpy as np
import pytest
from helpers.numerics import rel_error

from numpy_attention.models import GPT, KVCache, blocks

CONFIG = dict(vocab_size=17, block_size=10, n_layer=3, n_head=2, n_embd=12)


def _model(**options):
    model = GPT(**{**CONFIG, **options}, rng=np.random.default_rng(0))
    for value in model.params.values():  # weights large enough that the logits are far from uniform
        value += 0.3 * np.random.default_rng(value.size).standard_normal(value.shape)
    return model


def test_prefill_equals_forward_at_every_position():
    model = _model()
    idx = np.random.default_rng(1).integers(0, 17, (3, 7))
    logits, cache = model.decode(idx)
    assert cache.length == 7
    assert rel_error(logits, model.forward(idx)[0]) < 1e-12


def test_every_decoding_step_equals_the_full_forward():
    model = _model()
    tokens = np.random.default_rng(2).integers(0, 17, (2, 10))
    logits, cache = model.decode(tokens[:, :3])
    for t in range(3, 10):
        logits, cache = model.decode(tokens[:, t : t + 1], cache)
        full = model.forward(tokens[:, : t + 1])[0][:, -1:]
        assert logits.shape == (2, 1, 17)
        assert rel_error(logits, full) < 1e-12, t
    with pytest.raises(ValueError, match="cache is full"):
        model.decode(tokens[:, :1], cache)


def test_each_cached_step_computes_one_query_per_layer(monkeypatch):
    model = _model()
    shapes = []
    attend = blocks.attend

    def spy(q, k, v, is_causal, dropout_p, rng):
        shapes.append((q.shape[2], k.shape[2], is_causal))
        return attend(q, k, v, is_causal, dropout_p, rng)

    monkeypatch.setattr(blocks, "attend", spy)
    model.generate(np.zeros((1, 4), dtype=int), 3, rng=0)
    n = CONFIG["n_layer"]
    assert shapes == [(4, 4, True)] * n + [(1, 5, False)] * n + [(1, 6, False)] * n


@pytest.mark.parametrize("top_k,temperature", [(None, 1.0), (5, 0.7), (1, 1.0)])
def test_generation_with_and_without_the_cache_gives_the_same_tokens(top_k, temperature):
    # 25 new tokens after 4: the context passes block_size = 10, so the crop (and the cache rebuild) is exercised.
    model = _model()
    prompt = np.random.default_rng(3).integers(0, 17, (3, 4))
    cached = model.generate(prompt, 25, temperature, top_k, rng=np.random.default_rng(4))
    plain = model.generate(prompt, 25, temperature, top_k, rng=np.random.default_rng(4), kv_cache=False)
    assert cached.shape == (3, 29)
    np.testing.assert_array_equal(cached, plain)
    np.testing.assert_array_equal(cached[:, :4], prompt)


def test_greedy_after_the_crop_follows_the_cropped_forward():
    model = _model()
    out = model.generate(np.random.default_rng(5).integers(0, 17, (2, 9)), 6, top_k=1)
    for t in range(9, 15):
        context = out[:, max(0, t - 10) : t]
        np.testing.assert_array_equal(out[:, t], model.forward(context)[0][:, -1].argmax(-1))


def test_generate_has_no_dropout_and_keeps_the_mode():
    model = _model(dropout=0.5)
    same_weights = _model(dropout=0.0)
    prompt = np.array([[1, 2, 3]])
    model.train()
    for kv_cache in (True, False):
        ours = model.generate(prompt, 12, rng=7, kv_cache=kv_cache)
        np.testing.assert_array_equal(ours, same_weights.generate(prompt, 12, rng=7, kv_cache=kv_cache))
    assert model.training


def test_sampling_follows_the_probabilities():
    # One position, 3 tokens: the empirical frequencies approach softmax(logits / temperature).
    model = GPT(vocab_size=3, block_size=4, n_layer=1, n_head=1, n_embd=4, rng=0)
    prompt = np.zeros((4000, 1), dtype=int)
    logits = model.forward(prompt[:1])[0][0, -1] / 0.5
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    drawn = model.generate(prompt, 1, temperature=0.5, rng=1)[:, -1]
    frequencies = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.abs(frequencies - expected).max() < 0.03
    top2 = model.generate(prompt, 1, top_k=2, rng=1)[:, -1]
    assert set(np.unique(top2)) == set(np.argsort(logits)[-2:])


def test_decode_and_generate_reject_bad_input():
    model = _model()
    with pytest.raises(TypeError, match="cache must be the KVCache"):
        model.decode(np.zeros((1, 1), dtype=int), cache={})
    _, cache = model.decode(np.zeros((2, 3), dtype=int))
    assert isinstance(cache, KVCache)
    with pytest.raises(ValueError, match="one new token per row"):
        model.decode(np.zeros((2, 2), dtype=int), cache)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(np.zeros((1, 1), dtype=int), 2, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(np.zeros((1, 1), dtype=int), 2, top_k=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(np.zeros((1, 1), dtype=int), -1)
    with pytest.raises(TypeError, match="max_new_tokens"):
        model.generate(np.zeros((1, 1), dtype=int), 2.0)
    with pytest.raises(ValueError, match="idx must hold indices"):
        model.generate(np.array([[17]]), 2)
    with pytest.raises(TypeError, match="integer dtype"):
        model.generate(np.array([[1.0]]), 2)
    assert model.generate(np.array([[1]]), 0).shape == (1, 1)

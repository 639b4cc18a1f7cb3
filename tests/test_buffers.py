"""The attention weights' memory is recycled only once nothing refers to it any more."""

import numpy as np
import pytest
from helpers.numerics import random_like

from numpy_attention.kernels import attention_backward, attention_forward, buffers

SHAPE = (4, 256, 256)  # 2 MiB of float64: above buffers.MIN_BYTES


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(buffers, "_buffers", [])


def test_a_buffer_is_reused_once_its_arrays_are_gone():
    first = buffers.empty(SHAPE, np.float64)
    address = first.__array_interface__["data"][0]
    del first
    assert buffers.empty(SHAPE, np.float64).__array_interface__["data"][0] == address


@pytest.mark.parametrize("keep", [
    lambda weights: weights,
    lambda weights: weights[1:3, ::2],  # a strided slice
    lambda weights: weights.reshape(-1).view(np.uint8),  # a reinterpretation
    lambda weights: memoryview(weights),  # the buffer protocol
])
def test_a_buffer_that_anything_still_refers_to_is_never_handed_out(keep):
    held = keep(buffers.empty(SHAPE, np.float64))
    snapshot = np.array(held, copy=True)
    other = buffers.empty(SHAPE, np.float64)
    other.fill(7.0)
    np.testing.assert_array_equal(np.asarray(held), snapshot)
    assert len(buffers._buffers) == 2


def test_weights_held_from_an_earlier_call_stay_unchanged(rng):
    q, k, v = (random_like(rng, (4, 256, 8)) for _ in range(3))
    _, cache = attention_forward(q, k, v)
    first_weights, expected = cache.weights[2], cache.weights[2].copy()
    del cache  # only a view of one head is left
    for _ in range(3):
        _, cache = attention_forward(q * 2.0, k, v, is_causal=True)
        attention_backward(random_like(rng, (4, 256, 8)), cache)
    np.testing.assert_array_equal(first_weights, expected)


def test_recycled_causal_weights_are_zero_above_the_diagonal(rng):
    q, k, v = (random_like(rng, (4, 256, 8)) for _ in range(3))
    _, cache = attention_forward(q, k, v)  # fills a buffer with weights everywhere
    del cache
    _, cache = attention_forward(q, k, v, is_causal=True)
    assert len(buffers._buffers) == 1  # the same memory, reused
    assert (cache.weights[:, ~np.tri(256, dtype=bool)] == 0).all()


def test_idle_buffers_stay_within_the_budget(monkeypatch):
    monkeypatch.setattr(buffers, "MAX_IDLE_BYTES", 5 << 20)
    for rows in (256, 257, 258, 259):  # four sizes of about 2 MiB, each freed at once
        buffers.empty((4, rows, 256), np.float64)
    assert sum(buffer.nbytes for buffer in buffers._buffers) <= 5 << 20
    assert buffers._buffers[-1].nbytes == 4 * 259 * 256 * 8  # the newest is kept


def test_a_zero_budget_turns_the_recycling_off(monkeypatch):
    monkeypatch.setattr(buffers, "MAX_IDLE_BYTES", 0)
    array = buffers.empty(SHAPE, np.float64)
    assert array.shape == SHAPE and array.flags.owndata and not buffers._buffers


def test_concurrent_calls_each_get_their_own_memory():
    from concurrent.futures import ThreadPoolExecutor

    inputs = [[random_like(np.random.default_rng(seed), (4, 256, 8)) for _ in range(3)] for seed in range(6)]
    causal = [index % 2 == 1 for index in range(6)]
    expected = [attention_forward(*qkv, is_causal=c)[1].weights.copy() for qkv, c in zip(inputs, causal)]

    def weights_of(index):
        return index, attention_forward(*inputs[index], is_causal=causal[index])[1].weights

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(weights_of, list(range(6)) * 3))  # all 18 held at once: none may share memory
    for index, weights in results:
        np.testing.assert_array_equal(weights, expected[index])

"""The attention runs in tiles of query rows; any tiling must give the same numbers as one tile.

The shapes of the case grid fit in one tile at the default tile size, so here
the tile size is shrunk until each tile holds one or two query rows: causal
tiles then stop at different keys, dK and dV accumulate over several tiles,
and the last tile is shorter than the others.
"""

import contextlib

import numpy as np
import pytest
from helpers.attention_cases import CASES
from helpers.numerics import random_like, rel_error

from numpy_attention.kernels import attention_backward, attention_forward
from numpy_attention.kernels import dense as attention
from numpy_attention.kernels import schedule as tiles
from numpy_attention.kernels.softmax import softmax_rows


def forward_backward(case):
    q, k, v, options = case.build(seed=5)
    out, cache = attention_forward(q, k, v, **options, rng=np.random.default_rng(6))
    dout = random_like(np.random.default_rng(7), out.shape)
    return (out, cache.weights, *attention_backward(dout, cache))


@pytest.mark.parametrize("rows_per_tile", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_small_tiles_give_the_same_output_weights_and_gradients(case, rows_per_tile, monkeypatch):
    whole = forward_backward(case)
    assert len(tiles.query_tiles(case.q[-2], case.k[-2], 8, case.is_causal)) == 1
    num_keys = case.k[-2]
    monkeypatch.setattr(tiles, "TILE_BYTES", rows_per_tile * num_keys * 8)
    assert len(tiles.query_tiles(case.q[-2], num_keys, 8, case.is_causal)) > 1
    tiled = forward_backward(case)
    for name, a, b in zip(["out", "weights", "dq", "dk", "dv"], tiled, whole):
        assert a.shape == b.shape, name
        assert rel_error(a, b) < 1e-13, name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_tiles_of_several_heads_give_the_same_numbers(case, monkeypatch):
    whole = forward_backward(case)
    monkeypatch.setattr(tiles, "MIN_CHUNKS", 1)  # one chunk: every k/v head of a batch entry
    monkeypatch.setattr(tiles, "CAUSAL_TILE_ROWS", 2)  # causal tiles of 2 rows, across the heads
    used = []

    def recording(task, chunks, num_scores, run=attention.for_each_chunk):
        used.extend(chunks)
        return run(task, chunks, num_scores)

    monkeypatch.setattr(attention, "for_each_chunk", recording)
    for name, a, b in zip(["out", "weights", "dq", "dk", "dv"], forward_backward(case), whole):
        assert rel_error(a, b) < 1e-13, name
    num_kv_heads = case.k[-3] if len(case.k) > 2 else 1
    assert {chunk[-1].stop - chunk[-1].start for chunk in used} == {num_kv_heads}


@pytest.mark.parametrize("is_causal", [False, True])
def test_tiles_cover_every_query_and_causal_tiles_stop_at_their_last_query(is_causal):
    row_tiles = tiles.query_tiles(num_queries=10, num_keys=7, itemsize=8, causal=is_causal)
    rows = np.concatenate([np.arange(10)[r] for r, _ in row_tiles])
    np.testing.assert_array_equal(rows, np.arange(10))
    for r, keys in row_tiles:
        assert keys.start == 0
        assert keys.stop == (min(r.stop, 7) if is_causal else 7)


def test_modifying_the_returned_output_leaves_the_gradients_unchanged(rng):
    q, k, v = (random_like(rng, (2, 3, 5, 4)) for _ in range(3))
    out, cache = attention_forward(q, k, v)
    dout = random_like(rng, out.shape)
    expected = attention_backward(dout, cache)
    out += 100.0  # e.g. a residual added in place
    for grad, reference in zip(attention_backward(dout, cache), expected):
        np.testing.assert_array_equal(grad, reference)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_heads_run_in_parallel_give_the_same_numbers(case, monkeypatch):
    whole = forward_backward(case)
    # Force the threads even for these tiny calls, with or without threadpoolctl installed.
    monkeypatch.setattr(tiles, "PARALLEL_MIN_SCORES", 0)
    monkeypatch.setattr(tiles, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    monkeypatch.setattr(tiles, "TILE_BYTES", 2 * case.k[-2] * 8)
    for name, a, b in zip(["out", "weights", "dq", "dk", "dv"], forward_backward(case), whole):
        assert rel_error(a, b) < 1e-13, name


def test_parallel_heads_cap_blas_at_one_thread_and_restore_it(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="the BLAS cap needs threadpoolctl")

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    if max(before, default=1) < 2:
        pytest.skip("BLAS runs one thread here: the heads run in turn")
    seen = []

    def recording_softmax(*args, **kwargs):
        seen.append(max(blas_threads()))
        return softmax_rows(*args, **kwargs)

    monkeypatch.setattr(attention, "softmax_rows", recording_softmax)
    rng = np.random.default_rng(0)
    q, k, v = (random_like(rng, (4, 256, 8)) for _ in range(3))  # 4 heads of 2^16 scores
    assert q.shape[0] * 256 * 256 >= tiles.PARALLEL_MIN_SCORES
    attention_forward(q, k, v)
    assert seen == [1, 1, 1, 1]
    assert blas_threads() == before


def test_causal_tiles_skip_masked_keys_only_for_heads_with_finite_inputs(rng):
    q, k, v = (random_like(rng, (2, 8, 4)) for _ in range(3))
    assert attention_forward(q, k, v, is_causal=True)[1].causal_heads.tolist() == [True, True]
    assert attention_forward(q, k, v)[1].causal_heads.tolist() == [False, False]
    k[0, 7, 1] = np.nan  # torch adds the mask to the scores: the NaN reaches every query of head 0
    out, cache = attention_forward(q, k, v, is_causal=True)
    assert cache.causal_heads.tolist() == [False, True]
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    dq, dk, dv = attention_backward(random_like(rng, out.shape), cache)
    assert np.isnan(dq[0]).all() and np.isfinite(dq[1]).all() and np.isfinite(dk[1]).all()


def test_scores_bound_bounds_every_score_and_is_not_finite_for_non_finite_inputs(rng):
    q, k = random_like(rng, (2, 3, 7, 5)) * 4, random_like(rng, (2, 3, 9, 5))
    scores = q @ k.swapaxes(-1, -2)
    bound = attention.scores_bound(q, k)
    assert np.abs(scores).max() <= bound <= 2 * np.abs(scores).max() * np.sqrt(5)
    k[1, 2, 3, 4] = np.inf
    assert not np.isfinite(attention.scores_bound(q, k))
    k[1, 2, 3, 4] = np.nan
    assert np.isnan(attention.scores_bound(q, k))


@pytest.mark.parametrize("magnitude, mask_kind, shifted", [
    (1.0, None, False), (1.0, "bool", False), (1.0, "causal", False), (1.0, "float", True), (30.0, None, True),
])
def test_the_softmax_skips_its_shift_only_when_the_scores_are_bounded(rng, monkeypatch, magnitude, mask_kind, shifted):
    q, k, v = (random_like(rng, (2, 8, 6)) * magnitude for _ in range(3))
    options = {"causal": {"is_causal": True}, "bool": {"attn_mask": rng.random((8, 8)) > 0.3},
               "float": {"attn_mask": random_like(rng, (8, 8))}, None: {}}[mask_kind]
    seen = []

    def recording(scores, shift=True):
        seen.append(shift)
        return softmax_rows(scores, shift=shift)

    monkeypatch.setattr(attention, "softmax_rows", recording)
    out, cache = attention_forward(q, k, v, **options)
    assert set(seen) == {shifted}
    # Either way, the same numbers as the textbook softmax of the masked scores.
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(6)
    if mask_kind == "causal":
        scores = np.where(np.tri(8, dtype=bool), scores, -np.inf)
    elif mask_kind == "bool":
        scores = np.where(options["attn_mask"], scores, -np.inf)
    elif mask_kind == "float":
        scores = scores + options["attn_mask"]
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    assert rel_error(cache.weights, weights) < 1e-13
    assert rel_error(out, weights @ v) < 1e-13


@pytest.mark.parametrize(
    "shape_a, shape_b", [((9, 4), (4, 5)), ((3, 40), (40, 6)), ((1, 1), (1, 1)), ((0, 3), (3, 2)), ((4, 0), (0, 3))]
)
def test_matmul_split_between_cores_equals_the_plain_product(rng, monkeypatch, shape_a, shape_b):
    # Forced onto two threads even for these tiny products, with or without threadpoolctl.
    monkeypatch.setattr(tiles, "PARALLEL_MIN_PRODUCT", 0)
    monkeypatch.setattr(tiles, "MAX_WORKERS", 2)
    monkeypatch.setattr(tiles, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    a, b = random_like(rng, shape_a), random_like(rng, shape_b)
    for left in (a, np.asfortranarray(a)):  # rows split (9 > 4) or inner split (40 > 3); any layout
        product = tiles.matmul(left, b)
        assert product.shape == (shape_a[0], shape_b[1])
        assert rel_error(product, a @ b) < 1e-14


def test_outputs_and_gradients_of_split_heads_merge_back_without_a_copy(rng):
    from numpy_attention.functional.heads import merge_heads, split_heads

    x = random_like(rng, (2, 5, 12))  # (N, L, H * D): heads are strided views of it
    q = split_heads(x, 3)
    out, cache = attention_forward(q, q, q)
    grads = attention_backward(random_like(rng, out.shape), cache)
    for array in (out, *grads):
        assert np.shares_memory(merge_heads(array), array)
    contiguous_out, _ = attention_forward(np.ascontiguousarray(q), q, q)
    np.testing.assert_array_equal(out, contiguous_out)

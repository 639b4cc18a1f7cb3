"""The tiled kernel computes the textbook dense pair's function, gradients included, in linear memory."""

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers.attention_cases import BAD_CALLS, CASES, Case, random_cases
from helpers.example_runner import ROOT, assert_png, run_example
from helpers.numerics import random_like, rel_error, require_torch

from gradcheck import numerical_gradients, torch_ops
from numpy_attention import ScaledDotProductAttention
from numpy_attention._args import attention_scores_shape
from numpy_attention.functional import attention as naive_module
from numpy_attention.functional import attention_backward, attention_forward
from numpy_attention.functional import dropout as position_dropout
from numpy_attention.kernels import flash as flash_module
from numpy_attention.kernels import flash_attention_backward, flash_attention_forward, schedule

CASE_IDS = [case.name for case in CASES]


RANDOM_CASES = random_cases(40, seed=2024)


def full_dropout_mask(cache, scores_shape):
    """The whole (..., Hq, L, S) keep-mask that the tiled pair regenerates tile by tile."""
    shape = scores_shape if len(scores_shape) > 2 else (1, *scores_shape)
    everything = (slice(0, shape[-2]), slice(0, shape[-1]))
    keep = position_dropout.position_keep_mask(cache.dropout_seed, shape, *everything, cache.dropout_p)
    return np.broadcast_to(keep, shape).reshape(scores_shape)


def naive_with_flash_dropout(monkeypatch, q, k, v, options, flash_cache):
    """The naive pair, given the tiled pair's dropout mask in place of the one it would draw."""
    with monkeypatch.context() as patch:
        if flash_cache.dropout_seed is not None:
            mask = full_dropout_mask(flash_cache, attention_scores_shape(q, k, v))
            patch.setattr(naive_module, "draw_keep_mask", lambda shape, p, rng: mask)
        return attention_forward(q, k, v, **options)


def assert_flash_equals_naive(monkeypatch, case, block_size, tolerance=1e-12):
    q, k, v, options = case.build(seed=5)
    out, cache = flash_attention_forward(q, k, v, **options, rng=np.random.default_rng(6), block_size=block_size)
    expected_out, naive_cache = naive_with_flash_dropout(monkeypatch, q, k, v, options, cache)
    dout = random_like(np.random.default_rng(7), out.shape)
    assert out.shape == expected_out.shape and out.dtype == expected_out.dtype
    assert rel_error(out, expected_out) < tolerance
    grads, expected = flash_attention_backward(dout, cache), attention_backward(dout, naive_cache)
    for name, grad, reference, x in zip("qkv", grads, expected, (q, k, v)):
        assert grad.shape == x.shape, name
        assert rel_error(grad, reference) < tolerance, name


@pytest.mark.parametrize("block_size", [1, 2, 3, (1, 3), (3, 2), None], ids=str)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_flash_equals_naive_on_the_case_grid(monkeypatch, case, block_size):
    assert_flash_equals_naive(monkeypatch, case, block_size)


@pytest.mark.parametrize("case, block_size", RANDOM_CASES, ids=[f"{c.name}-b{b}" for c, b in RANDOM_CASES])
def test_flash_equals_naive_on_random_shapes_and_options(monkeypatch, case, block_size):
    assert_flash_equals_naive(monkeypatch, case, block_size)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_flash_matches_torch(case):
    torch = require_torch()
    q, k, v, options = case.build(seed=3)
    out, cache = flash_attention_forward(q, k, v, **options, rng=np.random.default_rng(4), block_size=2)
    scores_shape = attention_scores_shape(q, k, v)
    dropout_mask = None if cache.dropout_seed is None else full_dropout_mask(cache, scores_shape)
    tensors = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
    out_t = torch_ops.attention(*tensors, options.get("attn_mask"), options["is_causal"], options["scale"],
                                dropout_mask, options["dropout_p"])
    dout = random_like(np.random.default_rng(5), out.shape)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-10
    for name, grad, tensor in zip("qkv", flash_attention_backward(dout, cache), tensors):
        assert rel_error(grad, tensor.grad.numpy()) < 1e-10, name


def test_random_grid_covers_every_option():
    cases = [case for case, _ in RANDOM_CASES]
    assert {case.mask for case in cases} >= {"bool", "float", "bool-padding", "bool-empty-row", "float-empty-row"}
    assert any(c.is_causal and c.q[-2] < c.k[-2] for c in cases)
    assert any(c.is_causal and c.q[-2] > c.k[-2] for c in cases)
    assert any(c.dropout_p > 0 for c in cases) and any(c.scale is not None for c in cases)
    assert any(c.q[-3] > c.k[-3] for c in cases)  # grouped-query attention
    assert any(len(c.q) > 3 and c.k[0] == 1 < c.q[0] for c in cases)  # broadcast batch
    assert any(c.q[-2] % b and c.k[-2] % b for c, b in RANDOM_CASES)  # blocks that divide neither L nor S
    assert any(c.q[-2] % b == 0 and c.k[-2] % b == 0 and b > 1 for c, b in RANDOM_CASES)


def test_rows_that_start_fully_masked_recover_in_later_tiles(monkeypatch):
    """Key tiles seen first may mask a row completely; the running max must start again from -inf."""
    rng = np.random.default_rng(3)
    q, k, v = random_like(rng, (2, 9, 4)), random_like(rng, (2, 11, 4)), random_like(rng, (2, 11, 3))
    mask = rng.random((2, 9, 11)) > 0.5
    mask[:, :, :6] = False  # nothing visible in the first tiles...
    mask[:, :, 9] = True  # ...but every row sees key 9
    mask[1, 4] = False  # and one row sees nothing at all
    case_options = {"attn_mask": mask}
    for block_size in (1, 2, 4):
        out, cache = flash_attention_forward(q, k, v, attn_mask=mask, block_size=block_size)
        expected, naive_cache = naive_with_flash_dropout(monkeypatch, q, k, v, case_options, cache)
        assert rel_error(out, expected) < 1e-12
        dout = random_like(rng, out.shape)
        for grad, reference in zip(flash_attention_backward(dout, cache), attention_backward(dout, naive_cache)):
            assert rel_error(grad, reference) < 1e-12


def test_v_alone_may_carry_a_batch_axis(monkeypatch):
    case = Case("v-batch", (1, 2, 5, 3), (1, 2, 6, 3), (4, 2, 6, 2), mask="float", mask_shape=(5, 6))
    assert_flash_equals_naive(monkeypatch, case, block_size=4)


FD_CASES = [c for c in CASES if c.name in {
    "unbatched", "gqa", "broadcast-batch", "bool-mask-per-head", "padding-mask", "float-mask",
    "causal-L<S", "causal-L>S", "fully-masked-row", "gqa-causal-dropout", "gqa-mask-dropout-scale",
}]


@pytest.mark.parametrize("case", FD_CASES, ids=[c.name for c in FD_CASES])
def test_flash_gradients_match_finite_differences(case):
    q, k, v, options = case.build(seed=1)

    def forward(q, k, v):  # a fresh generator of one seed: the same dropout mask at every call
        return flash_attention_forward(q, k, v, **options, rng=np.random.default_rng(8), block_size=2)

    out, cache = forward(q, k, v)
    dout = random_like(np.random.default_rng(2), out.shape)
    grads = flash_attention_backward(dout, cache)
    expected = numerical_gradients(lambda q, k, v: forward(q, k, v)[0], [q, k, v], dout)
    for name, grad, reference in zip("qkv", grads, expected):
        assert rel_error(grad, reference) < 1e-7, name


def test_dropout_mask_does_not_depend_on_the_block_size(rng):
    q, k, v = random_like(rng, (2, 3, 13, 4)), random_like(rng, (2, 3, 10, 4)), random_like(rng, (2, 3, 10, 5))
    results = []
    for block_size in (1, 3, 4, 10, 64):
        rng = np.random.default_rng(9)
        out, cache = flash_attention_forward(q, k, v, dropout_p=0.4, rng=rng, block_size=block_size)
        results.append((out, flash_attention_backward(np.ones_like(out) * np.arange(5), cache)))
    reference_out, reference_grads = results[0]
    for out, grads in results[1:]:
        assert rel_error(out, reference_out) < 1e-12
        assert all(rel_error(g, r) < 1e-12 for g, r in zip(grads, reference_grads))


def test_dropout_mask_keeps_one_minus_p_and_follows_the_generator():
    keep = position_dropout.position_keep_mask(np.uint64(12345), (2, 300, 400), slice(0, 300), slice(0, 400), 0.3)
    assert keep.shape == (2, 300, 400)
    assert abs(keep.mean() - 0.7) < 0.005  # 240 000 draws: the standard deviation is 0.001
    assert abs(keep[:, :, ::2].mean() - keep[:, :, 1::2].mean()) < 0.01  # no alternating pattern
    assert not np.array_equal(keep[0], keep[1])  # heads get different masks
    tile = position_dropout.position_keep_mask(np.uint64(12345), (2, 300, 400), slice(10, 17), slice(390, 400), 0.3)
    np.testing.assert_array_equal(tile, keep[:, 10:17, 390:400])

    x = random_like(np.random.default_rng(0), (1, 8, 4))
    out_a, _ = flash_attention_forward(x, x, x, dropout_p=0.5, rng=np.random.default_rng(1))
    out_b, _ = flash_attention_forward(x, x, x, dropout_p=0.5, rng=np.random.default_rng(1))
    out_c, _ = flash_attention_forward(x, x, x, dropout_p=0.5, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(out_a, out_c)


def test_causal_skips_tiles_wholly_above_the_diagonal(monkeypatch, rng):
    visited = []
    tile_scores = flash_module._tile_scores

    def counting_tile_scores(q_rows, k, mask, num_heads, cols):
        visited.append(cols.start)
        return tile_scores(q_rows, k, mask, num_heads, cols)

    monkeypatch.setattr(flash_module, "_tile_scores", counting_tile_scores)
    q, k, v = (random_like(rng, (1, 8, 3)) for _ in range(3))
    out, cache = flash_attention_forward(q, k, v, is_causal=True, block_size=2)
    flash_attention_backward(random_like(rng, out.shape), cache)
    # Four row tiles see 1, 2, 3, 4 key tiles: 10 of 16, in the forward and again in the backward.
    assert visited == [0, 0, 2, 0, 2, 4, 0, 2, 4, 6] * 2


def test_fully_masked_rows_give_zero_output_and_gradient_without_warnings(rng):
    q, k, v = random_like(rng, (2, 6, 4)), random_like(rng, (2, 7, 4)), random_like(rng, (2, 7, 3))
    mask = rng.standard_normal((6, 7))
    mask[[1, 4]] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = flash_attention_forward(q, k, v, attn_mask=mask, block_size=2)
        dq, dk, dv = flash_attention_backward(random_like(rng, out.shape), cache)
    assert np.all(out[:, [1, 4]] == 0) and np.all(dq[:, [1, 4]] == 0)
    assert np.all(np.isposinf(cache.log_row_sum[:, [1, 4]])) and np.all(cache.row_max[:, [1, 4]] == 0)
    assert all(np.all(np.isfinite(x)) for x in (out, dq, dk, dv))


def test_the_cache_holds_nothing_of_size_l_by_s(rng):
    q, k, v = random_like(rng, (2, 40, 4)), random_like(rng, (2, 50, 4)), random_like(rng, (2, 50, 3))
    _, cache = flash_attention_forward(q, k, v, dropout_p=0.2, rng=rng, block_size=8)
    arrays = [x for x in cache if isinstance(x, np.ndarray)]
    assert max(x.size for x in arrays) < 40 * 50
    assert cache.row_max.shape == cache.log_row_sum.shape == (2, 40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(rng, dtype):
    q, k, v = (random_like(rng, (2, 2, 9, 4), dtype) for _ in range(3))
    mask = random_like(rng, (9, 9))  # a float64 mask does not upcast float32 inputs
    out, cache = flash_attention_forward(q, k, v, attn_mask=mask, dropout_p=0.2, rng=rng, block_size=4)
    grads = flash_attention_backward(random_like(rng, out.shape, dtype), cache)
    assert out.dtype == dtype and cache.row_max.dtype == cache.log_row_sum.dtype == dtype
    assert all(g.dtype == dtype for g in grads)


def test_float32_agrees_with_float64(rng):
    q, k, v = (random_like(rng, (2, 33, 8)) for _ in range(3))
    dout = random_like(rng, (2, 33, 8))
    out64, cache64 = flash_attention_forward(q, k, v, is_causal=True, block_size=8)
    out32, cache32 = flash_attention_forward(*(x.astype(np.float32) for x in (q, k, v)), is_causal=True, block_size=8)
    assert rel_error(out32, out64) < 1e-5
    grads32 = flash_attention_backward(dout.astype(np.float32), cache32)
    for g32, g64 in zip(grads32, flash_attention_backward(dout, cache64)):
        assert rel_error(g32, g64) < 1e-5


@pytest.mark.parametrize("message, error, make", BAD_CALLS, ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_CALLS)])
def test_bad_input_is_rejected_as_by_the_naive_pair(message, error, make):
    args, kwargs = make(lambda *shape: np.zeros(shape))
    with pytest.raises(error, match=message):
        flash_attention_forward(*args, **kwargs)


@pytest.mark.parametrize("block_size, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_block_size_is_rejected(block_size, error):
    x = np.zeros((3, 4))
    with pytest.raises(error, match=f"block_size.*{block_size!r}"):
        flash_attention_forward(x, x, x, block_size=block_size)


def test_integer_inputs_are_converted_to_float64():
    x = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    out, cache = flash_attention_forward(x, x, x, block_size=2)
    expected, _ = attention_forward(x, x, x)
    assert out.dtype == np.float64 and rel_error(out, expected) < 1e-12


def test_default_block_size_fits_a_tile_in_cache():
    assert schedule.default_block_size(np.float32, 64) == (512, 256)
    assert schedule.default_block_size(np.float64, 64) == (256, 128)
    for dtype in (np.float32, np.float64):
        for head_dim in (8, 64, 512):
            rows, keys = schedule.default_block_size(dtype, head_dim)
            itemsize = np.dtype(dtype).itemsize
            working_set = (2 * rows * keys + 3 * rows * head_dim + 4 * keys * head_dim) * itemsize
            assert rows == 2 * keys and (working_set <= schedule.TILE_CACHE_BYTES or keys == 32)


@pytest.mark.parametrize("block_size, error, message", [
    ((2, 0), ValueError, r"block_size\[1\].*0"),
    ((0, 2), ValueError, r"block_size\[0\].*0"),
    ((2, 1.5), TypeError, r"block_size\[1\].*1\.5"),
    ((2, 2, 2), TypeError, "block_size.*tuple"),
])
def test_bad_tile_shape_is_rejected(block_size, error, message):
    x = np.zeros((3, 4))
    with pytest.raises(error, match=message):
        flash_attention_forward(x, x, x, block_size=block_size)


def test_an_int_block_size_is_a_square_tile_and_a_pair_its_shape():
    x = np.zeros((3, 4))
    assert flash_attention_forward(x, x, x, block_size=2)[1].block_size == (2, 2)
    assert flash_attention_forward(x, x, x, block_size=(1, 3))[1].block_size == (1, 3)


def test_module_with_flash_impl_matches_the_naive_module(rng):
    q, k, v = random_like(rng, (2, 4, 7, 3)), random_like(rng, (2, 2, 9, 3)), random_like(rng, (2, 2, 9, 5))
    mask = rng.random((7, 9)) > 0.3
    dout = random_like(rng, (2, 4, 7, 5))
    flash, naive = ScaledDotProductAttention(scale=0.4, impl="flash"), ScaledDotProductAttention(scale=0.4)
    out, weights = flash(q, k, v, attn_mask=mask)
    expected_out, expected_weights = naive(q, k, v, attn_mask=mask)
    assert weights is None and expected_weights is not None
    assert rel_error(out, expected_out) < 1e-12
    for grad, reference in zip(flash.backward(dout), naive.backward(dout)):
        assert rel_error(grad, reference) < 1e-12
    causal_out, _ = flash(q, k, v, is_causal=True)
    assert rel_error(causal_out, naive(q, k, v, is_causal=True)[0]) < 1e-12


def test_module_with_flash_impl_applies_dropout_in_training_only():
    x = random_like(np.random.default_rng(0), (2, 6, 4))
    layer = ScaledDotProductAttention(dropout=0.5, impl="flash", rng=np.random.default_rng(1))
    train_a, _ = layer(x, x, x)
    train_b, _ = layer(x, x, x)
    assert not np.array_equal(train_a, train_b)  # a new mask per call
    layer.eval()
    eval_out, _ = layer(x, x, x)
    np.testing.assert_allclose(eval_out, attention_forward(x, x, x)[0], rtol=1e-12)


def test_memory_benchmark_shows_quadratic_naive_and_flat_flash_memory(tmp_path):
    record_path = tmp_path / "memory.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--sizes", "256", "512", "1024", "2048",
         "--repeats", "1", "--naive-budget-gib", "0.01", "--json", str(record_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(record_path.read_text())["rows"]
    assert [row["length"] for row in rows] == [256, 512, 1024, 2048]
    # Twice the length: the naive pair's working memory grows as L^2 (it keeps the L x S weights,
    # and works through tiles of at most 256 query rows: about 3x from L = 256 to 512), the tiled
    # pair's stays flat once L reaches the default tile's 512 rows (float32, E = 64), as L quadruples.
    assert rows[1]["naive"]["extra_bytes"] > 2.5 * rows[0]["naive"]["extra_bytes"]
    assert rows[1]["naive"]["extra_bytes"] > 512 * 512 * 4  # at least the float32 weights
    assert rows[3]["flash"]["extra_bytes"] < 1.5 * rows[1]["flash"]["extra_bytes"]
    assert rows[1]["flash"]["extra_bytes"] < rows[1]["naive"]["extra_bytes"]
    # 10 MiB of budget: the naive pair's predicted 13 MiB at L = 1024 is skipped, and said so.
    assert "naive" not in rows[3]
    assert "naive" not in rows[2] and "exceeds the 0.01 GiB budget" in rows[2]["naive_skipped"]
    assert "naive skipped at L = 1024" in result.stdout
    assert rows[0]["time_ratio_flash_over_naive"] > 0 and rows[2]["flash"]["median_seconds"] > 0


def test_long_sequence_example_checks_flash_and_draws_the_figure(tmp_path):
    pytest.importorskip("matplotlib", reason="the example draws with matplotlib: pip install matplotlib")
    stdout = run_example("long_sequence.py", tmp_path, "--max-len", "512")
    difference = float(re.search(r"largest relative difference (\S+)", stdout).group(1))
    assert difference < 1e-12
    assert "| 512 |" in stdout
    assert_png(tmp_path / "long_sequence.png")


@pytest.mark.parametrize("magnitude", [1.0, 30.0])  # scores within EXP_SAFE_BOUND, and far beyond it
@pytest.mark.parametrize("options", [{}, {"is_causal": True}], ids=["full", "causal"])
def test_the_running_maximum_is_skipped_only_for_bounded_scores(rng, magnitude, options):
    q, k, v = (random_like(rng, (2, 3, 13, 6)) * magnitude for _ in range(3))
    out, cache = flash_attention_forward(q, k, v, **options, block_size=(4, 3))
    expected, naive_cache = attention_forward(q, k, v, **options)
    assert bool(cache.row_max.any()) == (magnitude > 1)  # m stays 0 for bounded scores
    assert rel_error(out, expected) < 1e-12
    dout = random_like(rng, out.shape)
    for grad, reference in zip(flash_attention_backward(dout, cache), attention_backward(dout, naive_cache)):
        assert rel_error(grad, reference) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_heads_run_in_parallel_give_the_same_numbers(monkeypatch, case):
    import contextlib

    from numpy_attention.kernels import schedule as tiles

    q, k, v, options = case.build(seed=5)
    out_shape = attention_forward(q, k, v, **options, rng=np.random.default_rng(6))[0].shape
    dout = random_like(np.random.default_rng(7), out_shape)

    def run():
        out, cache = flash_attention_forward(q, k, v, **options, rng=np.random.default_rng(6), block_size=(3, 2))
        return (out, *flash_attention_backward(dout, cache))

    in_turn = run()
    # Forced onto two threads, one chunk per k/v head of each batch entry, with or without threadpoolctl.
    monkeypatch.setattr(tiles, "PARALLEL_MIN_SCORES", 0)
    monkeypatch.setattr(tiles, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    for name, a, b in zip(["out", "dq", "dk", "dv"], run(), in_turn):
        assert rel_error(a, b) < 1e-13, name

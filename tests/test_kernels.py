"""Every kernel equals its textbook pair: outputs, weights and gradients, to 1e-12 relative in float64.

The textbook pairs in ``numpy_attention.functional`` are the spec; the kernels in
``numpy_attention.kernels`` schedule the same function for speed. Both draw their
dropout masks the same way from the same generator, so they are compared with
dropout too. The grid is the shared case grid and seeded random shapes, with block
sizes from 1 up, sizes that span several tiles and chunks of heads on the cores,
and scores large enough to need the softmax's shift.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from helpers.attention_cases import CASES, Case, random_cases
from helpers.numerics import random_like, rel_error

from gradcheck import numerical_gradients
from numpy_attention import functional, kernels
from numpy_attention.kernels import schedule

TOLERANCE = 1e-12
GRID = [(case, None) for case in CASES] + random_cases(30, seed=77)
GRID_IDS = [f"{case.name}-b{block}" for case, block in GRID]
# Cases larger than one tile of the dense kernel (256 rows; causal tiles of 64) and than its
# threshold for running chunks of heads on the cores.
LARGE = [
    Case("large", (2, 4, 300, 16), (2, 2, 260, 16), (2, 2, 260, 8)),
    Case("large-causal", (2, 4, 300, 16), (2, 2, 300, 16), (2, 2, 300, 8), is_causal=True),
    Case("large-causal-L<T", (1, 4, 200, 16), (1, 4, 330, 16), (1, 4, 330, 8), is_causal=True, dropout_p=0.2),
    Case("large-mask-dropout", (2, 4, 270, 8), (2, 4, 290, 8), (2, 4, 290, 8), mask="bool", dropout_p=0.3),
    Case("large-float-mask", (1, 8, 257, 8), (1, 8, 263, 8), (1, 8, 263, 4), mask="float", mask_shape=(257, 263)),
]


def run(pair: tuple, case: Case, magnitude: float = 1.0, seed: int = 5, **extra) -> list[np.ndarray]:
    """[out, dq, dk, dv] (and the weights when the cache has them) of ``pair`` on the case's inputs."""
    forward, backward = pair
    q, k, v, options = case.build(seed=seed)
    q, k = q * magnitude, k * magnitude
    out, cache = forward(q, k, v, **options, rng=np.random.default_rng(seed + 1), **extra)
    dout = random_like(np.random.default_rng(seed + 2), out.shape)
    results = [out, *backward(dout, cache)]
    return results + ([cache.weights] if hasattr(cache, "weights") else [])


def assert_equal_results(got: list[np.ndarray], expected: list[np.ndarray], tolerance: float = TOLERANCE) -> None:
    assert len(got) == len(expected)
    for name, a, b in zip(("out", "dq", "dk", "dv", "weights"), got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert rel_error(a, b) < tolerance, name


DENSE = (kernels.attention_forward, kernels.attention_backward)
TEXTBOOK = (functional.attention_forward, functional.attention_backward)
FLASH = (kernels.flash_attention_forward, kernels.flash_attention_backward)
TEXTBOOK_FLASH = (functional.flash_attention_forward, functional.flash_attention_backward)


@pytest.mark.parametrize("case, _", GRID, ids=GRID_IDS)
def test_dense_kernel_equals_the_textbook_pair(case, _):
    assert_equal_results(run(DENSE, case), run(TEXTBOOK, case))


@pytest.mark.parametrize("case", LARGE, ids=lambda c: c.name)
@pytest.mark.parametrize("magnitude", [1.0, 40.0])  # standard scores, and scores far past the bounded softmax
def test_dense_kernel_equals_the_textbook_pair_across_tiles_and_cores(case, magnitude, monkeypatch):
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))  # threads, always
    assert_equal_results(run(DENSE, case, magnitude), run(TEXTBOOK, case, magnitude))


@pytest.mark.parametrize("case, block", GRID, ids=GRID_IDS)
def test_flash_kernel_equals_the_textbook_flash_pair(case, block):
    # Different tiles on the two sides: the result must not depend on them.
    kernel_block = block if block is not None else 1
    assert_equal_results(run(FLASH, case, block_size=kernel_block), run(TEXTBOOK_FLASH, case, block_size=(3, 2)))


@pytest.mark.parametrize("block", [1, 2, 3, (1, 4), (5, 2), (16, 8), None], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.dropout_p == 0] + LARGE[:2], ids=lambda c: c.name)
def test_both_tiled_pairs_equal_the_textbook_dense_pair(case, block):
    if block in (1, 2, 3) and case in LARGE:
        pytest.skip("the large cases run with larger tiles only (one Python step per tile)")
    expected = run(TEXTBOOK, case)[:4]
    assert_equal_results(run(TEXTBOOK_FLASH, case, block_size=block), expected)
    assert_equal_results(run(FLASH, case, block_size=block), expected)


@pytest.mark.parametrize("case", LARGE, ids=lambda c: c.name)
@pytest.mark.parametrize("magnitude", [1.0, 40.0])
def test_flash_kernel_equals_the_textbook_flash_pair_across_tiles_and_cores(case, magnitude, monkeypatch):
    monkeypatch.setattr(schedule, "PARALLEL_MIN_SCORES", 0)
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    got = run(FLASH, case, magnitude, block_size=(64, 32))
    assert_equal_results(got, run(TEXTBOOK_FLASH, case, magnitude, block_size=(100, 48)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_take_the_textbook_dtype_and_agree_in_float32(dtype):
    case = LARGE[1]
    cast = Case(case.name, case.q, case.k, case.v, is_causal=True)
    results = {}
    for name, pair, extra in (("dense", DENSE, {}), ("textbook", TEXTBOOK, {}), ("flash", FLASH, {"block_size": 64}),
                              ("textbook-flash", TEXTBOOK_FLASH, {"block_size": 64})):
        forward, backward = pair
        q, k, v, options = cast.build(seed=3)
        q, k, v = (x.astype(dtype) for x in (q, k, v))
        out, cache = forward(q, k, v, **options, **extra)
        results[name] = [out, *backward(random_like(np.random.default_rng(4), out.shape, dtype), cache)]
        assert all(x.dtype == dtype for x in results[name]), name
    tolerance = TOLERANCE if dtype == np.float64 else 1e-5
    for name in ("dense", "flash", "textbook-flash"):
        assert_equal_results(results[name], results["textbook"], tolerance)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("gqa", "causal-L>S", "fully-masked-row",
                                                                   "broadcast-batch", "unbatched", "dropout")],
                         ids=lambda c: c.name)
def test_the_textbook_flash_pair_matches_finite_differences(case):
    q, k, v, options = case.build(seed=1)

    def forward(q, k, v):
        return functional.flash_attention_forward(q, k, v, **options, rng=np.random.default_rng(8), block_size=2)

    out, cache = forward(q, k, v)
    dout = random_like(np.random.default_rng(2), out.shape)
    expected = numerical_gradients(lambda q, k, v: forward(q, k, v)[0], [q, k, v], dout)
    for name, grad, reference in zip("qkv", functional.flash_attention_backward(dout, cache), expected):
        assert rel_error(grad, reference) < 1e-7, name


@pytest.mark.parametrize("shape, out_features", [((3, 4), 5), ((2, 3, 7), 6), ((512, 256), 64), ((4, 1024, 64), 128)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_kernel_equals_the_textbook_pair(shape, out_features, bias, monkeypatch):
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))  # split the big products
    rng = np.random.default_rng(9)
    x, weight = rng.standard_normal(shape), rng.standard_normal((out_features, shape[-1]))
    b = rng.standard_normal(out_features) if bias else None
    dout = rng.standard_normal((*shape[:-1], out_features))
    results = []
    for forward, backward in ((kernels.linear_forward, kernels.linear_backward),
                              (functional.linear_forward, functional.linear_backward)):
        out, cache = forward(x, weight, b)
        results.append([out, *(g for g in backward(dout, cache) if g is not None)])
    assert len(results[0]) == len(results[1]) == (4 if bias else 3)
    for a, e in zip(*results):
        assert rel_error(a, e) < TOLERANCE


SLOPES_FAR = 0.012 + 0.001 * np.arange(4.0)
# Today's options (issue 14) in the kernels: (q, k, v shapes, options); sinks are drawn per case.
OPTION_CASES = {
    "softcap": (((2, 4, 7, 3), (2, 2, 9, 3), (2, 2, 9, 2)), dict(softcap=0.8)),
    "alibi": (((2, 4, 7, 3), (2, 2, 9, 3), (2, 2, 9, 2)), dict(alibi_slopes=2.0 ** -np.arange(1.0, 5.0))),
    "window": (((1, 2, 9, 3), (1, 2, 9, 3), (1, 2, 9, 4)), dict(window=(2, 1))),
    "window-left-none": (((1, 2, 9, 3), (1, 2, 9, 3), (1, 2, 9, 4)), dict(window=(None, 2))),
    "window-right-none-causal": (((1, 2, 9, 3), (1, 2, 9, 3), (1, 2, 9, 4)), dict(window=(3, None), is_causal=True)),
    "sinks": (((2, 4, 5, 3), (2, 2, 7, 3), (2, 2, 7, 2)), dict(sinks=True)),
    "offset-negative-causal": (((1, 2, 6, 3), (1, 2, 9, 3), (1, 2, 9, 2)), dict(query_offset=-2, is_causal=True)),
    "offset-kv-cache": (((2, 2, 3, 3), (1, 2, 10, 3), (1, 2, 10, 2)), dict(query_offset=7, is_causal=True,
                                                                          window=(4, 0))),
    "everything": (((2, 4, 6, 3), (2, 2, 11, 3), (2, 2, 11, 2)),
                   dict(softcap=1.5, alibi_slopes=2.0 ** -np.arange(1.0, 5.0), window=(3, 1), sinks=True,
                        query_offset=3, is_causal=True)),
    "everything-bool-mask": (((3, 2, 5, 3), (1, 2, 7, 3), (1, 2, 7, 2)),
                             dict(softcap=2.0, sinks=True, window=(None, 0), attn_mask="bool")),
    # Queries 10^5 positions past the keys: ALiBi adds about -slope * 10^5 (< -1000) to every score of a
    # row, past the bounded softmax (exp underflows to 0 without the shift), yet the weights stay spread.
    "alibi-far": (((1, 4, 5, 3), (1, 2, 8, 3), (1, 2, 8, 2)), dict(alibi_slopes=SLOPES_FAR, query_offset=100_000,
                                                                 is_causal=True)),
}


def run_options(pair: tuple, name: str, magnitude: float = 1.0, dtype=np.float64, **extra) -> list[np.ndarray]:
    """[out, dq, dk, dv(, dsinks)] of ``pair`` on the option case ``name``, random data, seed fixed."""
    rng = np.random.default_rng(11)
    shapes, options = OPTION_CASES[name]
    q, k, v = (rng.standard_normal(shape).astype(dtype) for shape in shapes)
    q, k = q * magnitude, k * magnitude
    options = dict(options)
    if options.get("sinks"):
        options["sinks"] = rng.standard_normal(q.shape[-3]).astype(dtype)
    if options.get("attn_mask") == "bool":
        options["attn_mask"] = rng.random((q.shape[-2], k.shape[-2])) < 0.7
    out, cache = pair[0](q, k, v, **options, **extra)
    return [out, *pair[1](random_like(np.random.default_rng(12), out.shape).astype(dtype), cache)]


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
@pytest.mark.parametrize("block", [1, 2, 3, (4, 2), None])
def test_flash_kernel_equals_the_textbook_flash_pair_with_every_option(name, block):
    got = run_options(FLASH, name, block_size=block)
    expected = run_options(TEXTBOOK_FLASH, name, block_size=block)
    assert_equal_results(got, expected)
    assert_equal_results(got, run_options(TEXTBOOK, name))


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
@pytest.mark.parametrize("rows", [1, 2, 3, None])
def test_dense_kernel_equals_the_textbook_pair_with_every_option(name, rows):
    """Query tiles of 1, 2, 3 rows (and the default): each tile's band of keys differs."""
    with schedule.tile_limits(rows=rows):
        got = run_options(DENSE, name)
    assert_equal_results(got, run_options(TEXTBOOK, name))


@pytest.mark.parametrize("name", ["softcap", "everything", "everything-bool-mask"])
@pytest.mark.parametrize("kernel", ["dense", "flash"])
def test_kernel_with_soft_capped_large_scores(name, kernel):
    # Scores x40 (and x1600 in q.k): the cap bounds them all by c, so the kernel runs its bounded path.
    with schedule.tile_limits(rows=2):
        got = run_options(DENSE, name, 40.0) if kernel == "dense" else run_options(FLASH, name, 40.0, block_size=2)
    assert_equal_results(got, run_options(TEXTBOOK, name, 40.0))


def test_alibi_far_needs_the_shift():
    """The "alibi-far" case's scores are all below -1000: unshifted, every weight would underflow to 0."""
    out = run_options(TEXTBOOK, "alibi-far")[0]
    assert np.all(np.isfinite(out)) and np.abs(out).min() > 1e-6


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
@pytest.mark.parametrize("kernel", ["dense", "flash"])
def test_kernel_options_in_float32(name, kernel):
    got = run_options(DENSE, name, dtype=np.float32) if kernel == "dense" else \
        run_options(FLASH, name, dtype=np.float32, block_size=3)
    expected = run_options(TEXTBOOK, name, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in got)
    assert_equal_results(got, expected, tolerance=1e-5)


@pytest.mark.parametrize("magnitude", [1.0, 40.0])
@pytest.mark.parametrize("kernel", ["dense", "flash"])
def test_kernel_options_across_tiles_and_cores(magnitude, kernel, monkeypatch):
    monkeypatch.setattr(schedule, "PARALLEL_MIN_SCORES", 0)
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    rng = np.random.default_rng(21)
    q, k, v = rng.standard_normal((2, 4, 300, 16)) * magnitude, rng.standard_normal((2, 2, 330, 16)), \
        rng.standard_normal((2, 2, 330, 8))
    options = dict(softcap=3.0, alibi_slopes=rng.uniform(0.05, 0.5, 4), window=(70, 5), sinks=rng.standard_normal(4),
                   query_offset=30, is_causal=True)
    dout = random_like(rng, (2, 4, 300, 8))
    if kernel == "dense":
        with schedule.tile_limits(rows=64):
            out, cache = kernels.attention_forward(q, k, v, **options)
            got = [out, *kernels.attention_backward(dout, cache)]
    else:
        out, cache = kernels.flash_attention_forward(q, k, v, **options, block_size=(64, 32))
        got = [out, *kernels.flash_attention_backward(dout, cache)]
    out, cache = functional.flash_attention_forward(q, k, v, **options, block_size=(100, 48))
    assert_equal_results(got, [out, *functional.flash_attention_backward(dout, cache)])


def count_modified_tiles(monkeypatch) -> list[tuple[int, int, int]]:
    """(first row, first key, keys) of every tile the kernels modify from now on."""
    from numpy_attention.kernels.score_options import ScoreOptions

    visited = []
    modify = ScoreOptions.modify

    def counting_modify(self, scores, query_heads, rows, cols, attn_mask=None):
        visited.append((rows.start, cols.start, cols.stop - cols.start))
        return modify(self, scores, query_heads, rows, cols, attn_mask)

    monkeypatch.setattr(ScoreOptions, "modify", counting_modify)
    return visited


def test_dense_kernel_computes_only_the_keys_in_each_row_tiles_band(monkeypatch):
    visited = count_modified_tiles(monkeypatch)
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 16, 3)) for _ in range(3))
    with schedule.tile_limits(rows=4):
        out, cache = kernels.attention_forward(q, k, v, is_causal=True, window=(3, 0), query_offset=2)
    # Rows 4r..4r+3 sit at positions 4r+2..4r+5 and see keys 4r-1..4r+5 (clipped to 0..15).
    assert visited == [(0, 0, 6), (4, 3, 7), (8, 7, 7), (12, 11, 5)]
    expected = functional.attention_forward(q, k, v, is_causal=True, window=(3, 0), query_offset=2)[1].weights
    assert np.all(cache.weights[expected == 0] == 0)  # the keys outside each tile's band: 0, not stale memory
    assert rel_error(cache.weights, expected) < TOLERANCE


def test_flash_kernel_visits_only_the_key_tiles_in_the_band(monkeypatch):
    visited = count_modified_tiles(monkeypatch)
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 16, 3)) for _ in range(3))
    out, cache = kernels.flash_attention_forward(q, k, v, is_causal=True, window=(3, 0), block_size=4)
    kernels.flash_attention_backward(random_like(rng, out.shape), cache)
    # Rows 4r..4r+3 see keys 4r-3..4r+3: key tiles r-1 and r only, 7 of 16, forward and backward.
    expected = [(0, 0, 4), (4, 0, 4), (4, 4, 4), (8, 4, 4), (8, 8, 4), (12, 8, 4), (12, 12, 4)]
    assert visited == expected * 2


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (7,), (3, 5, 11), (2, 300, 1024)])
def test_gelu_kernel_equals_the_textbook_pair_bit_for_bit(shape, dtype, approximate, monkeypatch):
    """Pieces on two threads: the last shape (614,400 elements) is over the threshold, a piece per core."""
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    rng = np.random.default_rng(31)
    x = (rng.standard_normal(shape) * np.where(rng.random(shape) < 0.1, 30.0, 2.0)).astype(dtype)
    dout = random_like(rng, shape, dtype)
    results = []
    for forward, backward in ((kernels.gelu_forward, kernels.gelu_backward),
                              (functional.gelu_forward, functional.gelu_backward)):
        out, cache = forward(x, approximate)
        results.append((out, backward(dout, cache)))
    for got, expected in zip(*results):
        assert got.dtype == expected.dtype == dtype and got.shape == expected.shape == shape
        np.testing.assert_array_equal(got, expected)


def test_pieces_cover_the_range_in_cache_sized_slices():
    cut = schedule.pieces(600_001, 4)
    step = schedule.PIECE_BYTES // 4
    assert len(cut) == -(-600_001 // step) >= 2
    assert cut[0].start == 0 and cut[-1].stop == 600_001
    assert all(a.stop == b.start and a.stop - a.start == step for a, b in zip(cut, cut[1:]))
    assert schedule.pieces(1000, 8) == [slice(0, 1000)] and schedule.pieces(0, 8) == [slice(0, 0)]
    assert schedule.pieces(3, 2 * schedule.PIECE_BYTES) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # a row each
    with schedule.tile_limits(bytes=8):
        assert schedule.pieces(5, 4) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert schedule.pieces(5, 4) == [slice(0, 5)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("weight", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 4), (5, 1), (7,), (3, 5, 11), (2, 600, 256), (3, 70_000)])
def test_layer_norm_kernel_equals_the_textbook_pair(shape, dtype, weight, bias, monkeypatch):
    """Rows in pieces on two threads ((2, 600, 256) is over the threshold; (3, 70 000) rows longer
    than a piece): output, cache and dx bit for bit; dweight and dbias, summed piece by piece, to rounding."""
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))
    rng = np.random.default_rng(32)
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    w = random_like(rng, shape[-1:], dtype) if weight else None
    b = random_like(rng, shape[-1:], dtype) if bias else None
    dout = random_like(rng, shape, dtype)
    x_before = x.copy()
    out, cache = kernels.layer_norm_forward(x, w, b)
    expected, textbook = functional.layer_norm_forward(x, w, b)
    got, want = kernels.layer_norm_backward(dout, cache), functional.layer_norm_backward(dout, textbook)
    np.testing.assert_array_equal(x, x_before)
    assert not np.shares_memory(out, cache.x_hat)
    for a, e in ((out, expected), (cache.x_hat, textbook.x_hat), (cache.rstd, textbook.rstd), (got[0], want[0])):
        assert a.dtype == e.dtype == dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)
    for a, e in zip(got[1:], want[1:]):
        assert (a is None) == (e is None)
        if a is not None:
            assert a.dtype == e.dtype == dtype and a.shape == e.shape == shape[-1:]
            # Both sum the same rows in another order: the difference is rounding, relative to the sum of |terms|.
            terms = np.abs(dout * textbook.x_hat).reshape(-1, shape[-1]).sum(axis=0) + np.abs(dout).reshape(
                -1, shape[-1]).sum(axis=0)
            assert np.all(np.abs(a.astype(np.float64) - e) <= 4 * np.finfo(dtype).eps * terms.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_embeddings, index_shape, padding_idx", [
    (65, (8, 256), None), (7, (3, 40), 2), (50, (5,), -1), (1, (4, 3), None), (9, (0,), None), (300, (2, 3, 4), None)])
def test_embedding_kernel_equals_the_textbook_pair(num_embeddings, index_shape, padding_idx, dtype):
    """Sorted runs summed by reduceat: the textbook's sums in the same order, to rounding; zero rows where no
    index points; the padding row zero; inputs untouched."""
    rng = np.random.default_rng(33)
    weight = random_like(rng, (num_embeddings, 6), dtype)
    indices = rng.integers(0, num_embeddings, index_shape)
    shape = (*index_shape, 6)
    dout = (rng.standard_normal(shape) * np.where(rng.random(shape) < 0.1, 1e3, 1.0)).astype(dtype)
    before = (indices.copy(), dout.copy())
    out, cache = kernels.embedding_forward(indices, weight, padding_idx)
    expected, textbook = functional.embedding_forward(indices, weight, padding_idx)
    np.testing.assert_array_equal(out, expected)
    got, want = kernels.embedding_backward(dout, cache), functional.embedding_backward(dout, textbook)
    np.testing.assert_array_equal(indices, before[0])
    np.testing.assert_array_equal(dout, before[1])
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == (num_embeddings, 6)
    terms = np.zeros((num_embeddings, 6))
    np.add.at(terms, indices.reshape(-1), np.abs(dout.reshape(-1, 6)).astype(np.float64))
    assert np.all(np.abs(got.astype(np.float64) - want) <= 4 * np.finfo(dtype).eps * terms)
    unused = np.setdiff1d(np.arange(num_embeddings), indices)
    assert np.all(got[unused] == 0) and (padding_idx is None or np.all(got[padding_idx] == 0))

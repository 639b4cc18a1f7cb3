"""The edge tier of ``python -m gradcheck`` (gradcheck/tiers/edges.py): it fails on bugs the per-op entries miss.

A bug is planted in a copy of a library function (``gradcheck.bugs.planted``) swapped in for
this test only. Each test shows the edge entries failing with the bug, passing without it, and
the per-op entries of the suite passing with it (the blind spot the tier closes).
"""

from __future__ import annotations

import importlib

import pytest
from helpers.gradcheck_entries import failing

import gradcheck.__main__ as cli
from gradcheck.bugs import planted
from gradcheck.suite import ENTRIES
from gradcheck.tiers import edges
from numpy_attention import functional as F
from numpy_attention import kernels
from numpy_attention.functional import embedding, heads, loss

pytest.importorskip("torch")


def named(entries, prefix: str) -> list:
    return [entry for entry in entries if entry.name.startswith(prefix)]


def test_the_edge_tier_passes_and_is_in_the_cli():
    assert failing(edges.ENTRIES) == []
    names = {entry.name for entry in cli.ENTRIES}
    assert {entry.name for entry in edges.ENTRIES} <= names


BUGS = [
    # (module, function, line, wrong line, the edge entries that catch it, the per-op prefix that misses it)
    (loss, "cross_entropy_backward", "dlosses = np.broadcast_to(dout / max(num_kept, 1), target.shape)",
     "dlosses = np.broadcast_to(dout / max(num_kept, 2), target.shape)", ["edges/cross_entropy/one-kept-target"],
     "cross_entropy/"),
    (loss, "cross_entropy_forward", "loss = np.array(np.nan, dtype=logits.dtype)",
     "loss = np.array(0.0, dtype=logits.dtype)", ["edges/cross_entropy/all-ignored-mean"], "cross_entropy/"),
    (loss, "cross_entropy_backward",
     "dout = np.asarray(dout, dtype=dtype)  # a Python number has no dtype of its own to check",
     "dout = np.asarray(-dout, dtype=dtype)", ["edges/cross_entropy/number-dout"],
     "cross_entropy/"),
    (loss, "cross_entropy_backward",
     "if isinstance(dout, (int, float)) and not isinstance(dout, (bool, np.generic)):",
     "if isinstance(dout, (int, float)) or not isinstance(dout, (bool, np.generic)):",  # casts any dout
     ["edges/cross_entropy/number-dout"], "cross_entropy/"),
    (loss, "cross_entropy_backward",
     "if isinstance(dout, (int, float)) and not isinstance(dout, (bool, np.generic)):",
     "if not isinstance(dout, (int, float)):",  # a float32 loss refuses a Python number
     ["edges/cross_entropy/number-dout"], "cross_entropy/"),
    (embedding, "embedding_backward", "if cache.padding_idx is not None:", "if cache.padding_idx:",
     ["edges/embedding/padding-idx-0"], "embedding/"),
    (heads, "append_keys_backward",
     "dbias = dout[:, length : length + 1].sum(axis=0, keepdims=True) if cache.has_bias else None",
     "dbias = dout[:, length : length + 1].sum(axis=0) if cache.has_bias else None",
     ["edges/append_keys/bias", "edges/append_keys/bias-zero"],
     "MultiHeadAttention/"),  # the module adds a (1, F) gradient into its (1, 1, F) one by broadcasting
]


@pytest.mark.parametrize("module, function, line, wrong, caught, per_op", BUGS,
                         ids=[f"{bug[4][0]}-{i}" for i, bug in enumerate(BUGS)])
def test_a_bug_at_the_edge_fails_the_edge_entry_and_passes_the_per_op_ones(
        monkeypatch, module, function, line, wrong, caught, per_op):
    original = getattr(module, function)
    matches = [name for name in vars(F) if getattr(F, name) is original]
    monkeypatch.setattr(module, function, planted(original, (line, wrong)))
    for name in matches:  # the functional namespace re-exports the same function
        monkeypatch.setattr(F, name, getattr(module, function))
    assert set(caught) <= set(failing(named(edges.ENTRIES, caught[0].rsplit("/", 1)[0])))
    assert failing(named(ENTRIES, per_op)) == []


def test_a_sink_softmax_shifted_the_wrong_way_fails_at_large_scores(monkeypatch):
    from numpy_attention.functional import score_mods

    line = ("row_max = np.maximum(S.max(axis=-1, keepdims=True, initial=-np.inf), sink)  # (..., Hq, l, 1), "
            "finite")
    monkeypatch.setattr(score_mods, "softmax_with_sink", planted(score_mods.softmax_with_sink, (line, line.replace(
        "row_max = np.maximum", "row_max = -np.maximum"))))
    assert failing(named(edges.ENTRIES, "edges/sinks/")) == ["edges/sinks/scores-1000"]
    assert failing(named(ENTRIES, "sinks/")) == []


def test_alibi_slopes_not_cast_fail_the_float32_score_mod_entry(monkeypatch):
    from numpy_attention.functional import score_mods

    line = 'slopes = as_head_vector(alibi_slopes, "alibi_slopes", S.shape[-3], S.dtype, cast=True)'
    wrong = planted(score_mods.score_mod_forward, (line, line.replace("cast=True", "cast=False")))
    monkeypatch.setattr(F, "score_mod_forward", wrong)  # the attention pairs cast the slopes before they call it
    assert failing(named(edges.ENTRIES, "edges/score_mod/")) == ["edges/score_mod/alibi-float32"]
    assert failing(named(ENTRIES, "score_mod/")) == []


@pytest.mark.parametrize("pair", [F, kernels], ids=["functional", "kernels"])
def test_a_convenience_sdpa_that_drops_the_scale_fails_the_edge_entry(monkeypatch, pair):
    wrong = planted(pair.scaled_dot_product_attention, (
        "out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, scale, rng=rng, **options)",
        "out, _ = attention_forward(q, k, v, attn_mask, dropout_p, is_causal, None, rng=rng, **options)"))
    monkeypatch.setattr(pair, "scaled_dot_product_attention", wrong)
    entry = f"edges/scaled_dot_product_attention/{pair.__name__.rsplit('.', 1)[-1]}"
    assert failing([e for e in cli.ENTRIES if e.name == entry]) == [entry]


def test_a_wrong_erfc_tail_fails_the_erf_entry_and_passes_the_gelu_ones(monkeypatch):
    """Cody's erfc beyond 4 only moves GELU by less than the per-op entries' tolerances."""
    erf = importlib.import_module("numpy_attention.functional.erf")  # the package's `erf` is the function

    line = "ratio = ysq * (num + P[4]) / (den + Q[4])"
    monkeypatch.setattr(erf, "_large", planted(erf._large, (line, "ratio = ysq * num / (den + Q[4])  # WRONG")))
    assert failing(named(edges.ENTRIES, "edges/erf/")) == ["edges/erf/every-branch"]
    assert failing(named(ENTRIES, "gelu/")) == []


def test_a_kernel_softmax_that_shifts_empty_rows_fails_the_no_keys_entries(monkeypatch):
    monkeypatch.setattr(kernels.dense, "softmax_rows", planted(kernels.softmax.softmax_rows, (
        "if shift and x.shape[-1]:", "if shift:  # WRONG: the max of no keys")))
    assert failing(named(edges.ENTRIES, "edges/attention/dense/")) == ["edges/attention/dense/no-keys-alibi"]


def test_a_mask_dropped_off_the_band_fails_the_unbanded_mask_entries(monkeypatch):
    from numpy_attention.kernels.score_options import ScoreOptions

    monkeypatch.setattr(ScoreOptions, "modify", planted(ScoreOptions.modify, (
        "elif attn_mask is not None:", "elif False:  # WRONG: a mask without causal or window ignored")))
    unbanded = [f"modern/attention/{name}/{impl}" for name in ("softcap-bool-mask", "alibi-sinks-float-mask")
                for impl in ("dense", "flash")]
    assert set(failing([e for e in ENTRIES if e.name in unbanded])) == set(unbanded)


def test_a_query_offset_ignored_on_the_plain_causal_path_fails_the_causal_offset_entries(monkeypatch):
    from numpy_attention.kernels.score_options import ScoreOptions

    wrong = planted(ScoreOptions.given.fget, ("or self.sinks is not None or self.query_offset != 0)",
                                              "or self.sinks is not None)  # WRONG: the offset alone is plain"))
    monkeypatch.setattr(ScoreOptions, "given", property(wrong))
    caught = [f"modern/attention/causal-offset/{impl}" for impl in ("dense", "flash")]
    assert failing([e for e in ENTRIES if e.name in caught]) == caught


@pytest.mark.parametrize("kernel", ["gelu", "layer_norm"])
def test_pieces_that_miss_elements_fail_the_kernel_piece_entries(monkeypatch, kernel):
    from gradcheck.tiers import tiles

    module = importlib.import_module(f"numpy_attention.kernels.{kernel}")
    monkeypatch.setattr(module, "pieces", planted(module.pieces, (
        "return [slice(start, min(start + step, count)) for start in range(0, count, step)] or [slice(0, 0)]",
        "return [slice(start, min(step, count)) for start in range(0, count, step)] or [slice(0, 0)]")))
    small = [e.name for e in tiles.ENTRIES if e.name.startswith(f"tiles/{kernel}/")]
    checked = [e for e in tiles.ENTRIES if e.name in small or e.name.startswith("tiles/kernels/")]
    assert small and failing(checked) == [*small, "tiles/kernels/gelu-layer-norm-full-size"]
    assert failing(named(ENTRIES, f"{kernel}/")) == []  # one piece: the suite's own entries cannot see it


def test_a_buffer_handed_out_while_in_use_fails_the_recycling_entry(monkeypatch):
    from numpy_attention.kernels import buffers

    line = "free = [index for index in range(len(_buffers)) if _references(index) == _FREE]"
    monkeypatch.setattr(buffers, "_buffers", [])
    monkeypatch.setattr(buffers, "empty", planted(buffers.empty, (line, line.replace("==", "!=") + "  # WRONG")))
    assert failing(named(edges.ENTRIES, "edges/kernels/")) == ["edges/kernels/recycled-weights"]


DENSE_BUGS = [
    ("if keys.start > 0:  # a band's tile: so do the keys before its first query's",
     "if keys.start > 1:  # WRONG: key 0 left as it was", "edges/kernels/recycled-weights"),
    ("no_alibi = options is None or options.alibi_slopes is None",
     "no_alibi = options is None or options.alibi_slopes is not None  # WRONG", "edges/attention/dense/alibi-far"),
    ("dropout_mask = draw_keep_mask(weights.shape if q.ndim > 2 else weights.shape[1:], dropout_p, rng)",
     "dropout_mask = draw_keep_mask(weights.shape if q.ndim > 3 else weights.shape[1:], dropout_p, rng)",
     "dropout/dense/p=0.4-no-batch"),  # one mask for every head of a (H, L, E) input
    ("batch = np.broadcast_shapes(q4.shape[:-3], k4.shape[:-3], v4.shape[:-3])",
     "batch = np.broadcast_shapes(q4.shape[:-3], k4.shape[:-4], v4.shape[:-3])", "attention/broadcast-k-batch"),
    ("tanh_scaled = tanh_scaled[0]", "tanh_scaled = tanh_scaled[1]", "edges/attention/dense/options-unbatched"),
]


@pytest.mark.parametrize("line, wrong, caught", DENSE_BUGS, ids=[bug[2] for bug in DENSE_BUGS])
def test_dense_kernel_bugs_only_large_or_odd_inputs_show(monkeypatch, line, wrong, caught):
    from numpy_attention.attention_impls import ATTENTION_IMPLS

    planted_forward = planted(kernels.attention_forward, (line, wrong))
    monkeypatch.setattr(kernels, "attention_forward", planted_forward)
    monkeypatch.setitem(ATTENTION_IMPLS, "dense", (planted_forward, ATTENTION_IMPLS["dense"][1]))
    assert failing([e for e in cli.ENTRIES if e.name == caught]) == [caught]


def test_the_dense_kernels_head_slice_read_from_the_wrong_axis_fails_the_option_entries(monkeypatch):
    from numpy_attention.attention_impls import ATTENTION_IMPLS

    line = ("kv_heads, group = range(num_kv_heads)[heads[-1]], num_heads // max(1, num_kv_heads)")
    planted_forward = planted(kernels.attention_forward, (line, line.replace("heads[-1]", "heads[1]")))
    monkeypatch.setitem(ATTENTION_IMPLS, "dense", (planted_forward, ATTENTION_IMPLS["dense"][1]))
    caught = ["edges/attention/dense/options-no-batch", "edges/attention/dense/options-two-batch-axes"]
    assert failing([e for e in cli.ENTRIES if e.name in caught]) == caught


def test_zero_heads_divided_by_fail_the_no_heads_entry(monkeypatch):
    line = "return x.reshape(*batch, num_kv_heads, num_heads // max(1, num_kv_heads), rows, cols)"
    monkeypatch.setattr(kernels.dense, "by_group", planted(kernels.dense.by_group, (line, line.replace(
        "max(1, num_kv_heads)", "num_kv_heads"))))
    assert failing([e for e in cli.ENTRIES if e.name == "edges/attention/dense/no-heads"]) == [
        "edges/attention/dense/no-heads"]


def test_flash_kernel_chunks_that_hold_no_head_fail_the_parallel_entry(monkeypatch):
    from numpy_attention.kernels import flash

    line = "chunks = [(*index, slice(head, head + 1)) for index in np.ndindex(*batch) for head in range(num_kv_heads)]"
    wrong = planted(flash._HeadViews.for_each_chunk, (line, line.replace("head + 1", "head")))
    monkeypatch.setattr(flash._HeadViews, "for_each_chunk", wrong)
    assert failing(named(edges.ENTRIES, "edges/kernels/")) == ["edges/kernels/flash-parallel"]


@pytest.mark.parametrize("function, line, wrong, caught", [
    ("matmuls", "step = max(1, -(-split // per_product))", "step = -max(1, -(-split // per_product))",
     "edges/kernels/linear-parallel"),  # no block at all: an uninitialized result
    ("query_tiles", "rows = max(1, min(num_queries, tile_rows, tile_bytes // max(1, num_keys * itemsize)))",
     "rows = max(0, min(num_queries, tile_rows, tile_bytes // max(1, num_keys * itemsize)))",
     "edges/kernels/dense-row-longer-than-a-tile"),
])
def test_schedule_bugs_that_only_large_or_long_calls_reach(monkeypatch, function, line, wrong, caught):
    from numpy_attention.kernels import dense, linear, schedule

    wrong_function = planted(getattr(schedule, function), (line, wrong))
    for module in (schedule, dense, linear):  # each imported the function by name
        if hasattr(module, function):
            monkeypatch.setattr(module, function, wrong_function)
    assert caught in failing(named(edges.ENTRIES, "edges/kernels/"))
    assert failing(named(ENTRIES, "linear/") + named(ENTRIES, "attention/batch")) == []


def test_the_last_two_survivors_fail_their_edge_entries(monkeypatch):
    """A buffer size divided by the item size (wrong from 8 MB of weights), a sink softmax without its head axis."""
    from numpy_attention.functional import score_mods
    from numpy_attention.kernels import buffers

    monkeypatch.setattr(buffers, "empty", planted(buffers.empty, (
        "nbytes = math.prod(shape) * dtype.itemsize", "nbytes = math.prod(shape) / dtype.itemsize  # WRONG")))
    wrong = planted(score_mods.softmax_with_sink_forward, ('S = as_scores(S, "S", heads=True)',
                                                           'S = as_scores(S, "S", heads=False)  # WRONG'))
    monkeypatch.setattr(F, "softmax_with_sink_forward", wrong)
    caught = ["edges/kernels/dense-large-weights", "edges/sinks/no-head-axis"]
    assert failing([e for e in edges.ENTRIES if e.name in caught]) == caught

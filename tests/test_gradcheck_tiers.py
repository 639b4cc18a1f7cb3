"""The tiers of ``python -m gradcheck`` (gradcheck/tiers/): each one fails on a bug planted where it looks.

A bug is planted in a copy of a library function (``gradcheck.bugs.planted``) that
is swapped in for this test only: in the registry of attention implementations
(``ATTENTION_IMPLS``) or as a kernel's module attribute. Each test shows the tier
failing on the bug and passing without it, and, where the issue found the old
suite blind, that the per-op entries before the tiers miss it.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
from helpers.gradcheck_entries import failing

import gradcheck.__main__ as cli
from gradcheck.bugs import planted
from gradcheck.suite import ENTRIES
from gradcheck.tiers import tiles
from numpy_attention import functional as F
from numpy_attention import kernels
from numpy_attention.attention_impls import ATTENTION_IMPLS
from numpy_attention.kernels import flash as kernel_flash
from numpy_attention.kernels import schedule
from numpy_attention.kernels.schedule import query_tiles, tile_limits


def entries(prefix: str) -> list:
    return [entry for entry in ENTRIES if entry.name.startswith(prefix)]


def install(monkeypatch, impl: str, forward=None, backward=None) -> None:
    """Swap a planted forward or backward into the registry under ``impl``."""
    pair = ATTENTION_IMPLS[impl]
    monkeypatch.setitem(ATTENTION_IMPLS, impl, (forward or pair[0], backward or pair[1]))


def test_tile_limits_cap_the_dense_tiles_and_restore_them():
    assert len(query_tiles(7, 9, 8, False)) == 1
    with tile_limits(rows=2):
        assert [rows for rows, _ in query_tiles(7, 9, 8, False)] == [slice(0, 2), slice(2, 4), slice(4, 6),
                                                                      slice(6, 7)]
        with tile_limits(bytes=3 * 9 * 8):
            assert len(query_tiles(7, 9, 8, False)) == 3
        assert len(query_tiles(7, 9, 8, True)) == 4
    assert len(query_tiles(7, 9, 8, False)) == 1
    with pytest.raises(ValueError, match="rows must be a positive int"):
        with tile_limits(rows=0):
            pass


def test_tile_limits_reach_the_worker_threads(monkeypatch):
    """A call large enough to run its heads on a pool of threads sees the caps there too, with the same result."""
    seen = []
    original = kernels.dense.query_tiles
    caller, helper_started = threading.get_ident(), threading.Event()

    def spy(*args):
        found = original(*args)
        if threading.get_ident() != caller:
            helper_started.set()
        elif any(ident == caller for ident, _ in seen):
            # The caller's first call plans the chunks; in its chunks it waits for a pool thread to take
            # one, so that a busy machine cannot let the caller drain them all alone.
            helper_started.wait(timeout=10)
        seen.append((threading.get_ident(), len(found)))
        return found

    monkeypatch.setattr(kernels.dense, "query_tiles", spy)
    monkeypatch.setattr(schedule, "one_thread_blas", lambda: (2, contextlib.nullcontext()))  # a pool, always
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 8, 256, 8)) for _ in range(3))
    expected, _ = kernels.attention_forward(q, k, v)
    seen.clear()
    helper_started.clear()
    with tile_limits(rows=32):
        out, _ = kernels.attention_forward(q, k, v)
    assert {count for _, count in seen} == {8}
    assert {ident for ident, _ in seen} - {threading.get_ident()}  # some ran on the pool's threads
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_every_implementation_has_multi_tile_and_causal_small_block_entries():
    names = {entry.name for entry in tiles.ENTRIES}
    for impl in ATTENTION_IMPLS:
        for case in ("L7-T9", "causal-L=T", "causal-L<T", "causal-L>T", "dropout"):
            assert f"tiles/{impl}/{case}" in names


DENSE_DV = "dv[heads][..., keys, :] += (dropped.swapaxes(-1, -2) @ dout_rows).sum(axis=1)"
FLASH_DV = "dV[..., j, :] += (P_ij * Z_ij).swapaxes(-1, -2) @ dO[..., i, :]"


@pytest.mark.parametrize("impl, function, line", [
    ("dense", kernels.attention_backward, DENSE_DV),
    ("textbook-flash", F.flash_attention_backward, FLASH_DV),
])
def test_dv_overwritten_per_tile_fails_the_multi_tile_entries(monkeypatch, impl, function, line):
    wrong = planted(function, (line, line.replace("+=", "=") + "  # WRONG: +="))
    tile_entries = entries(f"tiles/{impl}/")
    assert failing(tile_entries[:1]) == []
    install(monkeypatch, impl, backward=wrong)
    assert len(failing(tile_entries)) >= len(tile_entries) - 2  # all but those with a single key tile
    if impl == "dense":  # the per-op entries fit in one query tile: blind to it
        assert failing([e for e in ENTRIES if e.name.startswith("attention/") and "tiles" not in e.name]) == []


def test_a_diagonal_tile_offset_fails_the_causal_small_block_entries(monkeypatch):
    """The flash kernel's causal mask of a tile with ``rows.start + cols.start`` (the issue's mutant)."""
    line = "return causal_mask(rows.stop - rows.start, cols.stop - cols.start, rows.start - cols.start)"
    wrong = planted(kernel_flash._tile_mask, (line, line.replace("rows.start - cols.start",
                                                                 "rows.start + cols.start") + "  # WRONG"))
    monkeypatch.setattr(kernel_flash, "_tile_mask", wrong)
    caught = failing(entries("tiles/flash/causal"))
    assert {"tiles/flash/causal-L=T", "tiles/flash/causal-L=T-blocks-3x2", "tiles/flash/causal-L<T"} <= set(caught)
    assert failing(entries("attention/flash-gqa-causal-L>S")) == []  # the one causal entry before: L > S


def test_a_causal_tile_without_its_offset_fails_the_dense_causal_entries(monkeypatch):
    """The dense kernel masking each causal tile as if it started at query 0."""
    wrong = planted(kernels.attention_forward, ("diagonal = scores[..., rows.start :]",
                                                "diagonal = scores  # WRONG: scores[..., rows.start :]"))
    install(monkeypatch, "dense", forward=wrong)
    assert {"tiles/dense/causal-L=T", "tiles/dense/causal-L<T"} <= set(failing(entries("tiles/dense/causal")))
    assert failing(entries("attention/causal")) == []


def test_textbook_flash_diagonal_offset_fails(monkeypatch):
    line = "query_pos, key_pos = positions(Q.shape[-2], K.shape[-2], cache.query_offset)"
    wrong = planted(F.flash.tile_scores, (line, "query_pos, key_pos = positions(Q.shape[-2], K.shape[-2], "
                                                "cache.query_offset - i.start + j.start)  # WRONG: the tile's offset"))
    monkeypatch.setattr(F.flash, "tile_scores", wrong)
    assert "tiles/textbook-flash/causal-L<T" in failing(entries("tiles/textbook-flash/causal"))


# --- the stress tier (torch only) ---------------------------------------------------------------

def stress_failures(monkeypatch, prefix: str) -> list[str]:
    pytest.importorskip("torch")
    return failing(entries(prefix))


def test_the_stress_tier_passes_and_needs_torch():
    pytest.importorskip("torch")
    assert failing(entries("stress/dense/") + entries("stress/softmax/")) == []
    result = cli.run_entry(entries("stress/dense/")[0], np.dtype(np.float64), False, False)
    assert result["reports"] == [] and result["skipped"].startswith("torch-only tier")


def test_a_softmax_without_its_max_shift_fails_the_stress_tier(monkeypatch):
    line = "m = np.where(np.isneginf(m), 0.0, m).astype(x.dtype, copy=False)  # an all -inf row: shift by 0"
    wrong = planted(F.softmax.softmax, (line, "m = np.zeros_like(m)  # WRONG: no shift by the row maximum"))
    monkeypatch.setattr(F.attention, "softmax", wrong)
    monkeypatch.setattr(F.softmax, "softmax", wrong)
    caught = stress_failures(monkeypatch, "stress/textbook/") + failing(entries("stress/softmax/"))
    assert {"stress/textbook/scores-x40", "stress/textbook/float-mask-800-1e4", "stress/softmax/logits-400"} <= set(
        caught)
    assert failing(entries("attention/") + entries("softmax/")) == []  # the per-op entries: blind


def test_the_kernels_softmax_without_its_shift_fails_the_stress_tier(monkeypatch):
    wrong = planted(kernels.softmax.softmax_rows, ("if shift and x.shape[-1]:", "if False:  # WRONG: never shifts"))
    monkeypatch.setattr(kernels.dense, "softmax_rows", wrong)
    assert "stress/dense/scores-x40" in stress_failures(monkeypatch, "stress/dense/")
    assert failing(entries("attention/batch-heads")) == []


def test_an_inverted_bounded_condition_fails_the_stress_tier(monkeypatch):
    line = "shift = not (zero_or_blocking_mask and no_alibi and (capped or bound <= EXP_SAFE_BOUND[q.dtype]))"
    wrong = planted(kernels.attention_forward, (line, line.replace("<=", ">") + "  # WRONG"))
    install(monkeypatch, "dense", forward=wrong)
    assert "stress/dense/scores-x40" in stress_failures(monkeypatch, "stress/dense/")


def test_the_flash_bounded_test_for_boolean_masks_fails_the_stress_tier(monkeypatch):
    """The issue's mutant that passed the whole pytest suite: ``!=`` for ``==`` in the flash kernel's test."""
    line = "bounded = (attn_mask is None or attn_mask.dtype == np.bool_) and options.alibi_slopes is None and ("
    wrong = planted(kernels.flash_attention_forward, (line, line.replace("==", "!=") + "  # WRONG"))
    install(monkeypatch, "flash", forward=wrong)
    assert "stress/flash/float-mask-800-1e4" in stress_failures(monkeypatch, "stress/flash/")


def test_the_flash_backward_finiteness_test_with_or_fails_the_nan_placement(monkeypatch):
    """The other mutant the pytest suite missed: a NaN in dout under causal reached only some keys."""
    line = "np.isfinite(q_rows).all() and np.isfinite(dout_rows).all() and np.isfinite(delta).all()"
    wrong = planted(kernels.flash_attention_backward, (line, line.replace(" and ", " or ") + "  # WRONG"))
    install(monkeypatch, "flash", backward=wrong)
    assert "stress/flash/causal-nan-in-dout" in stress_failures(monkeypatch, "stress/flash/")


def test_a_log_softmax_without_its_shift_fails_the_stress_tier(monkeypatch):
    from numpy_attention.functional import loss

    line = "shifted = x - x.max(axis=axis, keepdims=True)"
    monkeypatch.setattr(loss, "log_softmax", planted(loss.log_softmax, (line, "shifted = x  # WRONG: no shift")))
    assert "stress/cross_entropy/logits-400-mean" in stress_failures(monkeypatch, "stress/cross_entropy/")
    assert failing(entries("cross_entropy/")) == []


# --- the dropout tier ------------------------------------------------------------------------------

def test_a_forward_that_skips_dropout_fails_only_the_dropout_tier(monkeypatch):
    """Mask drawn nowhere: finite differences and torch (handed our absent mask) agree with it."""
    wrong = planted(F.attention_forward, ("keep = draw_keep_mask(P.shape, dropout_p, rng)",
                                          "keep = None  # WRONG: dropout never drawn"))
    install(monkeypatch, "textbook", forward=wrong)
    assert set(failing(entries("dropout/textbook/"))) == {"dropout/textbook/p=0.3", "dropout/textbook/p=0.7-L<T",
                                                          "dropout/textbook/p=0.4-no-batch"}
    assert failing([e for e in ENTRIES if "textbook-dropout" in e.name or "textbook/dropout" in e.name]) == []


def test_a_flash_kernel_that_skips_dropout_fails_the_dropout_tier(monkeypatch):
    wrong = planted(kernels.flash_attention_forward, ("dropout_seed = draw_dropout_seed(dropout_p, rng)",
                                                      "dropout_seed = None  # WRONG: dropout never drawn"))
    install(monkeypatch, "flash", forward=wrong)
    assert "dropout/flash/p=0.3" in failing(entries("dropout/flash/"))


def test_a_backward_that_ignores_the_mask_fails_the_dropout_tier(monkeypatch):
    from gradcheck.bugs import ATTENTION_MISTAKES

    install(monkeypatch, "textbook", backward=planted(F.attention_backward, *ATTENTION_MISTAKES["dropout-forgotten"]))
    result = cli.run_entry(entries("dropout/textbook/p=0.3")[0], np.dtype(np.float64), False, False)
    (report,) = result["reports"]
    assert {row.name for row in report.failures} == {"dq", "dk"}  # dV = (P Z)^T dO is still right


def test_a_tile_mask_that_ignores_the_seed_fails_the_dropout_tier(monkeypatch):
    """The same mask every step: rate, values and gradients are right, only a second generator shows it."""
    from numpy_attention.functional import dropout

    line = "z = (position + np.uint64(1)) * _GOLDEN_GAMMA + seed  # uint64 arithmetic wraps, as intended"
    wrong = planted(dropout.position_keep_mask, (line, "z = (position + np.uint64(1)) * _GOLDEN_GAMMA  # WRONG"))
    monkeypatch.setattr(dropout, "position_keep_mask", wrong)
    names = ["dropout/flash/p=0.3", "dropout/textbook-flash/p=0.3"]
    assert failing([e for e in ENTRIES if e.name in names]) == names
    result = cli.run_entry(entries("dropout/flash/p=0.3")[0], np.dtype(np.float64), False, False)
    assert [row.name for row in result["reports"][0].failures] == ["another generator's mask"]


def test_a_multi_head_attention_that_skips_dropout_fails_the_dropout_tier(monkeypatch):
    from numpy_attention.multihead import module

    wrong = planted(module.MultiHeadAttention.forward, ("dropout_p = self.dropout if self.training else 0.0",
                                                        "dropout_p = 0.0  # WRONG: eval mode always"))
    monkeypatch.setattr(module.MultiHeadAttention, "forward", wrong)
    assert failing(entries("dropout/MultiHeadAttention/dense")) == ["dropout/MultiHeadAttention/dense-p=0.25"]


# --- the weights tier ------------------------------------------------------------------------------

def test_causal_weights_left_stale_in_recycled_memory_fail_the_weights_tier(monkeypatch):
    wrong = planted(kernels.attention_forward, ("weights_heads[..., rows, keys.stop :] = 0.0",
                                                "pass  # WRONG: the keys after the tile's last query keep old values"))
    assert failing(entries("weights/dense-causal-recycled-memory"), use_torch=False) == []
    install(monkeypatch, "dense", forward=wrong)
    assert failing(entries("weights/dense-causal-recycled-memory"), use_torch=False) == [
        "weights/dense-causal-recycled-memory"]


@pytest.mark.parametrize("line, wrong, caught", [
    ("if cache.dropout_mask is not None:", "if False:  # WRONG: the weights before dropout",
     "weights/MultiHeadAttention/dropout-per-head"),
    ("weights = weights.mean(axis=1)", "weights = weights.sum(axis=1)  # WRONG: a sum over the heads",
     "weights/MultiHeadAttention/averaged"),
])
def test_wrong_returned_weights_fail_the_weights_tier(monkeypatch, line, wrong, caught):
    pytest.importorskip("torch")
    from numpy_attention.multihead import module

    planted_weights = planted(module.MultiHeadAttention._returned_weights, (line, wrong))
    monkeypatch.setattr(module.MultiHeadAttention, "_returned_weights", staticmethod(planted_weights))
    assert caught in failing(entries("weights/MultiHeadAttention/"))
    assert failing(entries("MultiHeadAttention/dropout-train") + entries("MultiHeadAttention/self-attention")) == []


def test_the_grouped_query_reference_is_torchs_function_when_every_head_has_its_keys():
    """torch_ops.grouped_query_attention (plain torch ops, every MHA option) against torch's own function."""
    torch = pytest.importorskip("torch")
    from gradcheck import suite, torch_ops

    for options in [dict(keys=4, masks="bool", add_bias_kv=True, add_zero_attn=True), dict(is_causal=True),
                    dict(batch=None, keys=4, masks="float", add_zero_attn=True),
                    dict(keys=4, batch_first=False, masks="bool"),
                    dict(dropout=0.3, training=True, keys=4, masks="float", add_bias_kv=True)]:
        target = suite.mha_target(np.float64, **options)
        params = {name: torch.tensor(value) for name, value in target.module.params.items()}
        inputs = [torch.tensor(x) for x in target.inputs] * (3 if len(target.inputs) == 1 else 1)
        keywords = {k: v for k, v in target.torch_forward.keywords.items() if k != "need_weights"}
        for extra in ({}, {"return_weights": True}, {"return_weights": True, "average_attn_weights": False}):
            expected = torch_ops.multi_head_attention(params, *inputs, **keywords, **extra)
            ours = torch_ops.grouped_query_attention(params, *inputs, **keywords, **extra)
            np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-12, atol=1e-14)


# --- the optimizer tier (torch only) -------------------------------------------------------------

def test_every_optimizer_of_the_library_has_entries():
    from gradcheck.tiers import optimizers
    from numpy_attention import optim

    assert "Adam" in optimizers.optimizer_classes()
    names = {entry.name for entry in ENTRIES}
    for name in optimizers.optimizer_classes():
        assert hasattr(optim, name) and f"optim/{name}/defaults" in names


@pytest.mark.parametrize("line, wrong, caught", [
    ("bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.step_count)",
     "bias_correction2_sqrt = 1.0  # WRONG: no bias correction of v", "optim/Adam/defaults"),
    ("grad = grad + weight_decay * param",
     "grad = grad + weight_decay * param * param  # WRONG: not L2", "optim/Adam/weight-decay"),
    ("v = np.maximum(state[\"v_max\"], v, out=state[\"v_max\"])",
     "np.maximum(state[\"v_max\"], v, out=state[\"v_max\"])  # WRONG: v_max kept, not used",
     "optim/Adam/amsgrad-weight-decay"),
])
def test_a_wrong_adam_step_fails_the_optimizer_tier(monkeypatch, line, wrong, caught):
    pytest.importorskip("torch")
    from numpy_attention import optim

    assert caught not in failing(entries("optim/Adam/"))
    monkeypatch.setattr(optim.Adam, "step", planted(optim.Adam.step, (line, wrong)))
    assert caught in failing(entries("optim/Adam/"))


# --- MultiHeadAttention's options in pairs ---------------------------------------------------------

def test_the_pairs_cover_every_pair_of_option_values():
    from gradcheck.tiers import mha_pairs

    wanted, covered = mha_pairs.covered_pairs()
    assert len(wanted) == 378 and wanted <= covered
    assert all(mha_pairs.allowed(dict(zip(mha_pairs.OPTIONS, row))) for row in mha_pairs.PAIRS)
    assert len({mha_pairs.pair_name(dict(zip(mha_pairs.OPTIONS, row))) for row in mha_pairs.PAIRS}) == 17


def test_appended_keys_blocked_by_a_boolean_mask_fail_the_pairs(monkeypatch):
    """A combination no per-op entry has: boolean masks with add_bias_kv / add_zero_attn."""
    pytest.importorskip("torch")
    from numpy_attention.multihead import masks, module

    line = "masks = [np.pad(m, padding, constant_values=0.0 if additive else True) for m in masks]"
    wrong = planted(masks.merge_masks, (line, line.replace("else True", "else False") + "  # WRONG: blocked"))
    monkeypatch.setattr(module, "merge_masks", wrong)
    caught = failing(entries("MultiHeadAttention-pairs/"))
    assert len(caught) >= 3 and all("mask-bool" in name and "add-" in name for name in caught)
    assert failing(entries("MultiHeadAttention/")) == []


def test_nan_aware_comparison_requires_the_same_nan_and_inf_places():
    from gradcheck.tiers.common import compare_nan_aware

    expected = np.array([1.0, np.nan, np.inf, -np.inf])
    assert compare_nan_aware("x", expected + 1e-14, expected, 1e-12, 1e-10).passed
    for wrong in ([1.0, 0.0, np.inf, -np.inf], [np.nan, np.nan, np.inf, -np.inf], [1.0, np.nan, -np.inf, -np.inf],
                  [1.0 + 1e-6, np.nan, np.inf, -np.inf]):
        assert not compare_nan_aware("x", np.array(wrong), expected, 1e-12, 1e-10).passed

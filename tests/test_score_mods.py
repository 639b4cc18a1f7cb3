"""Score modifications, the mask predicate and the sink softmax: finite differences, torch twins, predicate tables."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers.numerics import random_like, rel_error, require_torch

import gradcheck
from numpy_attention.functional.score_mods import (
    UNBOUNDED,
    key_band,
    score_mod_backward,
    score_mod_forward,
    sink_grad,
    softmax_with_sink,
    softmax_with_sink_backward,
    softmax_with_sink_forward,
    visible,
)

HEADS, ROWS, KEYS = 3, 4, 6
SLOPES = 2.0 ** -np.arange(1, HEADS + 1)  # ALiBi's geometric slopes 1/2, 1/4, 1/8
OPTIONS = pytest.mark.parametrize("options", [
    {"softcap": 5.0}, {"alibi_slopes": SLOPES}, {"softcap": 2.0, "alibi_slopes": SLOPES}, {},
], ids=["softcap", "alibi", "softcap+alibi", "none"])


def tile_positions(offset: int = 2):
    """Query positions offset into the keys (a KV cache's new queries), key positions 0..t-1."""
    return np.arange(ROWS) + offset, np.arange(KEYS)


def torch_score_mod(scores, query_pos, key_pos, softcap=None, alibi_slopes=None):
    """The published formulas with plain torch ops: c * tanh(s / c), then - slope_h * |i - j|."""
    torch = require_torch()
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if alibi_slopes is not None:
        distance = (torch.as_tensor(query_pos)[:, None] - torch.as_tensor(key_pos)[None, :]).abs()
        scores = scores - torch.as_tensor(alibi_slopes)[:, None, None] * distance
    return scores


# --- score_mod -------------------------------------------------------------------------------

@OPTIONS
@pytest.mark.parametrize("magnitude", [1.0, 30.0], ids=["standard", "large"])
def test_score_mod_gradients_match_finite_differences(rng, options, magnitude):
    scores = magnitude * random_like(rng, (2, HEADS, ROWS, KEYS))  # large: |s| >> c, tanh saturates
    query_pos, key_pos = tile_positions()
    report = gradcheck.check(lambda s: score_mod_forward(s, query_pos, key_pos, **options), score_mod_backward,
                             (scores,))
    assert report.passed, str(report)


@OPTIONS
def test_score_mod_matches_its_torch_twin(rng, options):
    torch = require_torch()
    scores = 4 * random_like(rng, (2, HEADS, ROWS, KEYS))
    query_pos, key_pos = rng.integers(-100, 100, ROWS), rng.integers(-100, 100, KEYS)
    dout = random_like(rng, scores.shape)
    out, cache = score_mod_forward(scores, query_pos, key_pos, **options)
    scores_t = torch.tensor(scores, requires_grad=True)
    out_t = torch_score_mod(scores_t, query_pos, key_pos, **options)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-12
    assert rel_error(score_mod_backward(dout, cache), scores_t.grad.numpy()) < 1e-12


def test_softcap_squeezes_into_the_cap_and_alibi_penalises_distance_per_head(rng):
    scores = 1e4 * random_like(rng, (HEADS, ROWS, KEYS))
    capped, _ = score_mod_forward(scores, *tile_positions(), softcap=30.0)
    assert np.abs(capped).max() <= 30.0 and np.abs(capped).max() > 29.9
    small = 1e-6 * scores
    nearly_identity, _ = score_mod_forward(small, *tile_positions(), softcap=30.0)
    ratio = np.abs(small).max() / 30.0
    assert rel_error(nearly_identity, small) <= ratio**2 / 3  # c tanh(s / c) = s (1 - (s / c)**2 / 3 + ...)
    zeros = np.zeros((HEADS, ROWS, KEYS))
    biased, _ = score_mod_forward(zeros, np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3, 4, 10]), alibi_slopes=SLOPES)
    assert biased[1, 3, 5] == -0.25 * 7 and biased[2, 2, 2] == 0 and biased[0, 0, 4] == -0.5 * 4


def test_score_mod_keeps_float32_and_returns_new_arrays(rng):
    scores = random_like(rng, (HEADS, ROWS, KEYS), np.float32)
    for options in ({}, {"softcap": 1.5, "alibi_slopes": SLOPES}):  # float64 slopes are constants: cast
        out, cache = score_mod_forward(scores, *tile_positions(), **options)
        dout = random_like(rng, out.shape, np.float32)
        dscores = score_mod_backward(dout, cache)
        assert out.dtype == dscores.dtype == np.float32
        assert not np.shares_memory(out, scores) and not np.shares_memory(dscores, dout)
        if cache.tanh_scaled is not None:
            assert not np.shares_memory(out, cache.tanh_scaled)


def test_score_mod_rejects_bad_input():
    scores, (query_pos, key_pos) = np.zeros((HEADS, ROWS, KEYS)), tile_positions()
    for softcap, error in ((0.0, ValueError), (-1.0, ValueError), ("5", TypeError), (np.inf, ValueError)):
        with pytest.raises(error, match="softcap"):
            score_mod_forward(scores, query_pos, key_pos, softcap=softcap)
    with pytest.raises(ValueError, match=r"alibi_slopes must have shape \(3,\).*\(2,\)"):
        score_mod_forward(scores, query_pos, key_pos, alibi_slopes=np.ones(2))
    with pytest.raises(ValueError, match=r"S must be \(\.\.\., Hq, l, t\).*\(4, 6\)"):
        score_mod_forward(scores[0], query_pos, key_pos, alibi_slopes=SLOPES)
    with pytest.raises(TypeError, match="alibi_slopes"):
        score_mod_forward(scores, query_pos, key_pos, alibi_slopes=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"query_pos must have shape \(4,\).*\(6,\)"):
        score_mod_forward(scores, key_pos, key_pos)
    with pytest.raises(TypeError, match="key_pos must have an integer dtype"):
        score_mod_forward(scores, query_pos, key_pos.astype(float))
    _, cache = score_mod_forward(scores, query_pos, key_pos, softcap=1.0)
    with pytest.raises(ValueError, match=r"dS_mod must have the forward output's shape \(3, 4, 6\)"):
        score_mod_backward(scores[0], cache)
    with pytest.raises(TypeError, match="cache must be the ScoreModCache"):
        score_mod_backward(scores, None)


# --- the mask predicate ------------------------------------------------------------------------

def table(rows):
    return np.array([[c == "x" for c in row] for row in rows])


def test_visible_tables_for_causal_and_windows():
    query_pos, key_pos = np.arange(4), np.arange(5)
    assert (visible(query_pos, key_pos) == np.ones((4, 5), bool)).all()
    assert (visible(query_pos, key_pos, is_causal=True) == table(["x....", "xx...", "xxx..", "xxxx."])).all()
    # Mistral's causal sliding window: the current key and `left` before it
    assert (visible(query_pos, key_pos, window=(1, 0)) == table(["x....", "xx...", ".xx..", "..xx."])).all()
    assert (visible(query_pos, key_pos, window=(1, 0), is_causal=True) == visible(query_pos, key_pos,
                                                                                   window=(1, 0))).all()
    assert (visible(query_pos, key_pos, window=(0, 2)) == table(["xxx..", ".xxx.", "..xxx", "...xx"])).all()
    assert (visible(query_pos, key_pos, window=(None, 1)) == table(["xx...", "xxx..", "xxxx.", "xxxxx"])).all()
    assert (visible(query_pos, key_pos, window=(2, None)) == table(["xxxxx", "xxxxx", "xxxxx", ".xxxx"])).all()
    assert (visible(query_pos, key_pos, window=(None, None)) == np.ones((4, 5), bool)).all()
    assert (visible(query_pos, key_pos, window=(2, 5), is_causal=True) == table(["x....", "xx...", "xxx..",
                                                                                 ".xxx."])).all()
    assert (visible(query_pos, key_pos, window=(0, 0)) == np.eye(4, 5, dtype=bool)).all()


def test_visible_with_a_query_offset_is_bottom_right_aligned():
    """Two new queries of a KV cache of 5 keys sit at positions 3 and 4 (query_offset = S - L)."""
    key_pos = np.arange(5)
    assert (visible(np.arange(2) + 3, key_pos, is_causal=True) == table(["xxxx.", "xxxxx"])).all()
    assert (visible(np.arange(2) + 3, key_pos, is_causal=True, window=(2, 0)) == table([".xxx.", "..xxx"])).all()
    assert (visible(np.arange(3) - 1, key_pos, is_causal=True) == table([".....", "x....", "xx..."])).all()


@pytest.mark.parametrize("left, right", [(3, 0), (0, 3), (2, 2), (None, 1), (1, None), (0, 0), (7, 7)])
@pytest.mark.parametrize("offset", [0, 3, -2])
@pytest.mark.parametrize("is_causal", [False, True])
def test_visible_is_the_off_by_one_exact_band(left, right, offset, is_causal):
    """Every (i, j) against the definition, and against torch's triangles (tril/triu with diagonals)."""
    torch = require_torch()
    query_pos, key_pos = np.arange(6) + offset, np.arange(9)
    mask = visible(query_pos, key_pos, is_causal=is_causal, window=(left, right))
    for a, i in enumerate(query_pos):
        for b, j in enumerate(key_pos):
            inside = (left is None or j >= i - left) and (right is None or j <= i + right)
            assert mask[a, b] == (inside and (not is_causal or j <= i))
    twin = torch.ones(6, 9, dtype=torch.bool)
    if right is not None:
        twin = twin.tril(offset + right)
    if left is not None:
        twin = twin.triu(offset - left)
    if is_causal:
        twin = twin.tril(offset)
    assert (mask == twin.numpy()).all()


def test_key_band_bounds_each_query():
    first, last = key_band(np.array([0, 5, 9]), is_causal=True, window=(4, None))
    assert first.tolist() == [-4, 1, 5] and last.tolist() == [0, 5, 9]
    first, last = key_band(np.array([3]))
    assert first.tolist() == [-UNBOUNDED] and last.tolist() == [UNBOUNDED]


def test_visible_rejects_bad_windows_and_positions():
    query_pos, key_pos = np.arange(3), np.arange(4)
    for window, error, message in [
        (4, TypeError, r"window must be None or a pair \(left, right\).*int 4"),
        ((1, 2, 3), TypeError, r"window must be None or a pair.*tuple"),
        ((-1, 0), ValueError, r"window\[left\] must be a non-negative int or None; got -1"),
        ((0, -2), ValueError, r"window\[right\] must be a non-negative int or None; got -2"),
        ((1.0, 0), TypeError, r"window\[left\] must be a non-negative int or None.*float 1.0"),
        ((0, True), TypeError, r"window\[right\].*bool"),
    ]:
        with pytest.raises(error, match=message):
            visible(query_pos, key_pos, window=window)
    with pytest.raises(TypeError, match="is_causal must be a bool"):
        visible(query_pos, key_pos, is_causal=None)
    with pytest.raises(ValueError, match=r"key_pos must be 1-D.*\(2, 2\)"):
        visible(query_pos, np.zeros((2, 2), int))
    with pytest.raises(TypeError, match="query_pos must have an integer dtype"):
        visible(query_pos.astype(np.float32), key_pos)


# --- the sink softmax ------------------------------------------------------------------------

def masked_scores(rng, magnitude=1.0):
    scores = magnitude * random_like(rng, (2, HEADS, ROWS, KEYS))
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, 1, 2, :] = -np.inf  # a row with no visible key
    return scores


def torch_sink_softmax(scores, sinks):
    """softmax over the logits with the sink column appended, then the sink column dropped."""
    torch = require_torch()
    sink_column = sinks[:, None, None].expand(*scores.shape[:-1], 1)
    return torch.softmax(torch.cat([scores, sink_column], dim=-1), dim=-1)


@pytest.mark.parametrize("magnitude", [1.0, 40.0], ids=["standard", "large"])
def test_sink_softmax_gradients_match_finite_differences(rng, magnitude):
    scores = magnitude * random_like(rng, (2, HEADS, ROWS, KEYS))
    sinks = magnitude * random_like(rng, (HEADS,))
    report = gradcheck.check(softmax_with_sink_forward, softmax_with_sink_backward, (scores, sinks))
    assert report.passed, str(report)


def test_sink_softmax_matches_its_torch_twin_with_masked_and_empty_rows(rng):
    torch = require_torch()
    scores, sinks = masked_scores(rng, 5.0), random_like(rng, (HEADS,))
    dprobs = random_like(rng, scores.shape)
    probs, cache = softmax_with_sink_forward(scores, sinks)
    dscores, dsinks = softmax_with_sink_backward(dprobs, cache)
    scores_t, sinks_t = torch.tensor(scores, requires_grad=True), torch.tensor(sinks, requires_grad=True)
    full = torch_sink_softmax(scores_t, sinks_t)
    full[..., :-1].backward(torch.tensor(dprobs))
    assert rel_error(probs, full[..., :-1].detach().numpy()) < 1e-12
    assert rel_error(cache.P_sink, full[..., -1:].detach().numpy()) < 1e-12
    assert rel_error(dscores, scores_t.grad.numpy()) < 1e-12 and rel_error(dsinks, sinks_t.grad.numpy()) < 1e-12
    assert (probs[0, 1, 2] == 0).all() and cache.P_sink[0, 1, 2, 0] == 1.0 and (dscores[0, 1, 2] == 0).all()
    assert np.isfinite(dscores).all() and (dscores[np.isneginf(scores)] == 0).all()
    assert rel_error(probs.sum(-1, keepdims=True) + cache.P_sink, np.ones_like(cache.P_sink)) < 1e-15


def test_sink_gradient_of_attention_is_minus_p_sink_times_rowsum_dout_out(rng):
    """In attention O = P V: dsinks from D = rowsum(dO * O) equals torch's autograd through the sink softmax."""
    torch = require_torch()
    scores, sinks, v = masked_scores(rng), random_like(rng, (HEADS,)), random_like(rng, (2, HEADS, KEYS, 5))
    dout = random_like(rng, (2, HEADS, ROWS, 5))
    probs, sink_probs = softmax_with_sink(scores, sinks)
    out = probs @ v
    dsinks = sink_grad(sink_probs, np.sum(dout * out, axis=-1, keepdims=True))
    sinks_t = torch.tensor(sinks, requires_grad=True)
    out_t = torch_sink_softmax(torch.tensor(scores), sinks_t)[..., :-1] @ torch.tensor(v)
    out_t.backward(torch.tensor(dout))
    assert rel_error(out, out_t.detach().numpy()) < 1e-12
    assert rel_error(dsinks, sinks_t.grad.numpy()) < 1e-12
    assert dsinks.shape == (HEADS,)


def test_sink_gradient_sums_over_every_batch_axis(rng):
    sink_probs, out_dot = rng.random((2, 3, HEADS, ROWS, 1)), random_like(rng, (2, 3, HEADS, ROWS, 1))
    expected = [-(sink_probs[:, :, h] * out_dot[:, :, h]).sum() for h in range(HEADS)]
    assert rel_error(sink_grad(sink_probs, out_dot), np.array(expected)) < 1e-14


def test_sink_softmax_keeps_float32_and_rejects_bad_sinks(rng):
    scores, sinks = random_like(rng, (HEADS, ROWS, KEYS), np.float32), random_like(rng, (HEADS,), np.float32)
    probs, cache = softmax_with_sink_forward(scores, sinks)
    dscores, dsinks = softmax_with_sink_backward(random_like(rng, probs.shape, np.float32), cache)
    assert probs.dtype == dscores.dtype == dsinks.dtype == np.float32
    assert not np.shares_memory(probs, cache.P)
    with pytest.raises(ValueError, match=r"sinks must have shape \(3,\), one value per query head; got shape \(4,\)"):
        softmax_with_sink_forward(scores, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="sinks must have the scores' dtype float32; got dtype float64"):
        softmax_with_sink_forward(scores, np.zeros(3))
    with pytest.raises(ValueError, match="sinks must be finite"):
        softmax_with_sink_forward(scores, np.array([0, -np.inf, 0], np.float32))
    with pytest.raises(ValueError, match=r"S must be \(\.\.\., Hq, l, t\)"):
        softmax_with_sink_forward(scores[0], sinks)
    with pytest.raises(ValueError, match=r"dP must have the forward output's shape"):
        softmax_with_sink_backward(np.zeros((ROWS, KEYS), np.float32), cache)


def test_check_query_offset_and_window_pass_valid_values_through():
    from numpy_attention.validation import check_query_offset, check_window

    assert check_query_offset(np.int32(-3)) == -3 and type(check_query_offset(np.int64(5))) is int
    for bad in (1.0, True, None, "2"):
        with pytest.raises(TypeError, match=r"query_offset must be an int \(query i sits at key position i \+"):
            check_query_offset(bad)
    assert check_window(None) is None and check_window([None, np.int64(3)]) == (None, 3)


# --- FlexAttention's forward as an extra oracle of the composition ---------------------------------

def test_pieces_composed_into_attention_match_flex_attention(rng):
    """scale q.k, score_mod, the visible predicate, the sink softmax and @ v, against torch's flex_attention.

    flex_attention takes the score modification (softcap, ALiBi and the window/causal mask as -inf) as a
    torch function of positions; its log-sum-exp adds the sink afterwards: O_sink = O * sigmoid(lse - sink).
    """
    torch = require_torch()
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    q, k, v = random_like(rng, (2, HEADS, ROWS, 8)), random_like(rng, (2, HEADS, KEYS, 8)), random_like(
        rng, (2, HEADS, KEYS, 5))
    sinks, offset, window, cap, scale = random_like(rng, (HEADS,)), KEYS - ROWS, (3, 0), 2.5, 0.4
    query_pos, key_pos = np.arange(ROWS) + offset, np.arange(KEYS)

    scores, _ = score_mod_forward(scale * q @ k.swapaxes(-1, -2), query_pos, key_pos, softcap=cap, alibi_slopes=SLOPES)
    scores[..., ~visible(query_pos, key_pos, is_causal=True, window=window)] = -np.inf
    probs, _ = softmax_with_sink(scores, sinks)
    ours = probs @ v

    slopes_t = torch.tensor(SLOPES)

    def score_mod(score, batch, head, query, key):
        query = query + offset
        score = cap * torch.tanh(score / cap) - slopes_t[head] * (query - key).abs()
        return torch.where((key <= query) & (key >= query - window[0]), score, -torch.inf)

    if not hasattr(flex, "AuxRequest"):
        pytest.skip("this torch's flex_attention cannot return its log-sum-exp (AuxRequest)")
    with warnings.catch_warnings():  # eager flex_attention warns that it is not compiled
        warnings.simplefilter("ignore", UserWarning)
        out, aux = flex.flex_attention(*(torch.tensor(a) for a in (q, k, v)), score_mod=score_mod, scale=scale,
                                       return_aux=flex.AuxRequest(lse=True))
    expected = out * torch.sigmoid(aux.lse - torch.tensor(sinks)[:, None])[..., None]
    assert rel_error(ours, expected.numpy()) < 1e-12

"""The edge tier: the inputs at the ends of an op's range, where a wrong divisor, sign or branch shows.

* cross-entropy with one kept target, with every target ignored (the mean is 0 / 0 = NaN, as torch's),
  with one class, and with a Python number (or an array of the other dtype) as the upstream gradient;
* an embedding whose ``padding_idx`` is 0 (falsy) or negative (counted from the end, as torch counts it);
* the appended keys (``bias_k`` and ``add_zero_attn``) as a pair of their own;
* erf, erfc and the exact GELU in their tails, relative to each value, against Python's math module;
* the options on (L, E) and (H, L, E) inputs and on inputs with two batch axes, and zero heads, in every
  implementation;
* masks that broadcast along rows or keys ((T,), (1, T), (B, 1, L, 1)) in small tiles, in every implementation;
* the flash kernel with its heads on a pool of threads, the linear kernel's products split between
  the cores, and the dense kernel's tiles when one row of scores exceeds the tile budget;
* attention over no keys (T = 0: the output is 0, as torch's), plain and with ALiBi, in every implementation;
* the dense kernel's recycled weights memory, with one call's cache alive across the next, and 16 MB of weights;
* the sink softmax at scores of +-1000, ALiBi's float64 slopes on float32 scores and attention, and ALiBi
  with queries 100 000 positions past the keys (every score near -slope 1e5);
* the convenience ``scaled_dot_product_attention`` of the textbook and of the kernels, which return the
  forward's output alone.

Each runs finite differences where the function has a derivative, and the torch comparison
(NaN-aware where the value is NaN) when torch is installed.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from numpy_attention import functional as F
from numpy_attention import kernels
from numpy_attention.functional import heads
from numpy_attention.functional.erf import erf, erfc
from numpy_attention.kernels.schedule import tile_limits

from .. import torch_ops
from ..reference import REFERENCE_TOLERANCES, require_torch
from ..report import Report, Row, compare
from ..targets import MODERN_IMPLS, Entry, Target, attention_target, normal, options_target
from .common import TierTarget, as_tier, torch_pair_run

IGNORE = -100
EXACT = float(np.finfo(np.float64).tiny)  # an atol with no rtol: equal to the last bit
ERF_TOLERANCE = (EXACT, 1e-15)  # relative to each value, however small: Cody's erf is within a few ulps
TAIL_TOLERANCE = (EXACT, 1e-13)  # GELU's: rounding x / sqrt 2 costs erfc up to 2 y^2 ulps (y <= 8 here)


def cross_entropy_edge(dtype: np.dtype, kept: int, classes: int = 5, reduction: str = "mean") -> Target:
    """Six rows of ``classes`` logits of which only the first ``kept`` targets count (the others ignored)."""
    (logits,) = normal(dtype, (6, classes), seed=70)
    target = np.random.default_rng(71).integers(0, classes, 6)
    target[kept:] = IGNORE
    options = {"reduction": reduction, "ignore_index": IGNORE}
    return Target((logits, target), functools.partial(F.cross_entropy_forward, **options), F.cross_entropy_backward,
                  torch_forward=functools.partial(torch_ops.cross_entropy, **options))


def all_ignored_mean(dtype: np.dtype) -> TierTarget:
    """Every target ignored, mean: the loss is NaN (0 / 0) and the gradient 0 in torch; compared NaN-aware."""
    target = as_tier(cross_entropy_edge(dtype, kept=0))
    target.own_torch = functools.partial(torch_pair_run, target)
    target.skip_finite_differences = "the mean over no kept target is NaN (0 / 0), as torch's: no derivative"
    return target


def number_dout_check(dtype: np.dtype, fast: bool) -> Report:
    """A Python-number ``dout`` acts as a 0-d array of the logits' dtype, in float64 and float32 alike;
    an array ``dout`` of the other float dtype is refused (as torch refuses mixed dtypes), not cast."""
    rows = []
    for logits_dtype, other in ((np.float64, np.float32), (np.float32, np.float64)):
        (logits,) = normal(logits_dtype, (4, 3), seed=72)
        target = np.random.default_rng(73).integers(0, 3, 4)
        for reduction in ("mean", "sum"):
            _, cache = F.cross_entropy_forward(logits, target, reduction=reduction)
            expected = F.cross_entropy_backward(np.asarray(0.7, dtype=logits_dtype), cache)
            label = f"{reduction}, {np.dtype(logits_dtype)}"
            rows.append(compare(f"dlogits ({label}, dout=0.7)", F.cross_entropy_backward(0.7, cache), expected,
                                EXACT, 0.0))
            rows.append(refused(f"dout of dtype {np.dtype(other)} ({label})", TypeError, F.cross_entropy_backward,
                                np.asarray(0.7, dtype=other), cache))
    return Report(title="cross_entropy_backward with a Python number, or an array of the other dtype, as dout",
                  rows=rows, method="against the same dout as a 0-d array (exactly); the other dtype refused",
                  dtype=str(np.dtype(dtype)), atol=EXACT, rtol=0.0, labels=("number", "array"))


def agreement_rows(label: str, names: tuple, got: tuple, expected: tuple, atol: float, rtol: float) -> list[Row]:
    """One row per named array of ``got`` against ``expected`` (a kernel's results against the textbook's)."""
    return [compare(f"{name} ({label})", a, b, atol, rtol) for name, a, b in zip(names, got, expected)]


def refused(name: str, error: type, function: Any, *args: Any) -> Row:
    """A row that passes when ``function(*args)`` raises ``error`` and fails when it returns."""
    try:
        function(*args)
    except error as err:
        return Row(name, (), "ok", 0.0, 0.0, note=f"refused: {str(err)[:60]}")
    return Row(name, (), "FAIL", num_failed=1, num_checked=1, note=f"accepted; expected a {error.__name__}")


def padding_idx_edge(dtype: np.dtype, padding_idx: int) -> Target:
    """A (7, 4) table with ``padding_idx`` 0 (falsy) or -1 (the last row, counted from the end as torch counts)."""
    indices = np.random.default_rng(74).integers(0, 7, (2, 6))
    indices.flat[::4] = padding_idx % 7
    (weight,) = normal(dtype, (7, 4), seed=75)
    return Target((indices, weight), functools.partial(F.embedding_forward, padding_idx=padding_idx),
                  F.embedding_backward, torch_forward=functools.partial(torch_ops.embedding, padding_idx=padding_idx),
                  skip_finite_differences="the padding row gets no gradient by design (as in torch), "
                                          "not the derivative of the lookup")


def torch_append_keys(x: Any, bias: Any, add_zero: bool) -> Any:
    torch = require_torch()
    batch, _, features = x.shape
    rows = [x, bias.expand(batch, 1, features)]
    if add_zero:
        rows.append(torch.zeros(batch, 1, features, dtype=x.dtype))
    return torch.cat(rows, dim=1)


def append_keys_target(dtype: np.dtype, add_zero: bool) -> Target:
    """Three batch entries of 4 keys with ``bias_k`` appended (and a zero key when ``add_zero``)."""
    x, bias = normal(dtype, (3, 4, 5), (1, 1, 5), seed=76)
    forward = functools.partial(heads.append_keys_forward, add_zero=add_zero)
    return Target((x, bias), forward, heads.append_keys_backward,
                  torch_forward=functools.partial(torch_append_keys, add_zero=add_zero))


def recycled_weights_check(dtype: np.dtype, fast: bool) -> Report:
    """The dense kernel's recycled weights memory (kernels/buffers.py) is never handed out while a cache holds it.

    Calls A and B of one size (weights of 2 MB, above ``buffers.MIN_BYTES``) with A's cache
    alive, then C of that size in a causal window once A is dropped (its memory recycled), then D of another size:
    every output, weights and gradient equals the textbook pair's, and A's backward runs after B.
    """
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float64)]
    rng = np.random.default_rng(85)
    lengths, causal = {"A": 256, "B": 256, "C": 256, "D": 320}, {"A": False, "B": True, "C": True, "D": True}
    # C reuses A's memory (all of it written) with a band: the weights left of each tile's band must be 0 again;
    # with row tiles of 64, the band of rows 64-127 starts at key 1.
    window = {"C": (63, 0)}
    inputs = {name: [rng.standard_normal((1, 4, length, 8)) for _ in range(4)] for name, length in lengths.items()}
    rows, caches, textbooks = [], {}, {}

    def gradient_rows(name: str, label: str) -> None:
        dout = inputs[name][3]
        rows.extend(agreement_rows(label, ("dq", "dk", "dv"), kernels.attention_backward(dout, caches.pop(name)),
                                   F.attention_backward(dout, textbooks[name]), atol, rtol))

    for name in "ABCD":
        q, k, v, _ = inputs[name]
        with tile_limits(rows=64):
            out, caches[name] = kernels.attention_forward(q, k, v, is_causal=causal[name], window=window.get(name))
        expected, textbooks[name] = F.attention_forward(q, k, v, is_causal=causal[name], window=window.get(name))
        rows += agreement_rows(name, ("output", "weights"), (out, caches[name].weights),  # MHA returns the weights
                               (expected, textbooks[name].weights), atol, rtol)
        if name == "B":
            gradient_rows("A", "A, after B")  # A's cache was alive during B: its weights must be A's still
    for name in "BCD":
        gradient_rows(name, name)
    return Report(title="dense kernel calls sharing recycled weights memory", rows=rows,
                  method="against the textbook pair, float64", dtype="float64", atol=atol, rtol=rtol,
                  labels=("kernel", "textbook"))


def flash_parallel_check(dtype: np.dtype, fast: bool) -> Report:
    """The flash kernel on enough scores (4 heads x 256 x 256) to run its heads on a pool of threads,
    plain, causal and in a window, against the textbook pair."""
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float64)]
    q, k, v, dout = (np.random.default_rng(86).standard_normal((1, 4, 256, 8)) for _ in range(4))
    rows = []
    sinks, slopes = np.linspace(-1.0, 1.0, 4), 2.0 ** -np.arange(1.0, 5.0)
    for label, options in (("plain", {}), ("causal", {"is_causal": True}), ("window", {"window": (40, 3)}),
                           ("sinks-alibi", {"sinks": sinks, "alibi_slopes": slopes})):  # per-head options per chunk
        out, cache = kernels.flash_attention_forward(q, k, v, **options)
        expected, textbook = F.attention_forward(q, k, v, **options)
        rows += agreement_rows(label, ("output", "dq", "dk", "dv", "dsinks"),
                               (out, *kernels.flash_attention_backward(dout, cache)),
                               (expected, *F.attention_backward(dout, textbook)), atol, rtol)
    return Report(title="flash kernel on a pool of threads", rows=rows, method="against the textbook pair, float64",
                  dtype="float64", atol=atol, rtol=rtol, labels=("kernel", "textbook"))


def linear_parallel_check(dtype: np.dtype, fast: bool) -> Report:
    """The kernels' linear pair on products large enough to be split between the cores (by rows, and by the
    inner dimension for the weight gradient), against the textbook pair."""
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float64)]
    rng = np.random.default_rng(87)
    rows = []
    for label, (batch, features, out_features) in (("tall", (4096, 64, 48)), ("wide", (96, 256, 384))):
        x, weight, bias = (rng.standard_normal(shape) for shape in ((batch, features), (out_features, features),
                                                                    (out_features,)))
        dout = rng.standard_normal((batch, out_features))
        out, cache = kernels.linear_forward(x, weight, bias)
        expected, textbook = F.linear_forward(x, weight, bias)
        rows += agreement_rows(label, ("output", "dx", "dweight", "dbias"),
                               (out, *kernels.linear_backward(dout, cache)),
                               (expected, *F.linear_backward(dout, textbook)), atol, rtol)
    return Report(title="kernels.linear on products split between the cores", rows=rows,
                  method="against the textbook pair, float64", dtype="float64", atol=atol, rtol=rtol,
                  labels=("kernel", "textbook"))


def large_weights_check(dtype: np.dtype, fast: bool) -> Report:
    """The dense kernel on weights of 16 MB (float32, 4 heads of 1024 x 1024), twice, against the textbook pair."""
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float32)]
    q, k, v = (np.random.default_rng(88).standard_normal((1, 4, 1024, 8)).astype(np.float32) for _ in range(3))
    expected = F.attention_forward(q, k, v, is_causal=True)[0]
    rows = [compare(f"output (call {i})", kernels.attention_forward(q, k, v, is_causal=True)[0], expected, atol, rtol)
            for i in (1, 2)]
    return Report(title="dense kernel on 16 MB of weights", rows=rows, method="against the textbook pair, float32",
                  dtype="float32", atol=atol, rtol=rtol, labels=("kernel", "textbook"))


def sink_without_heads_check(dtype: np.dtype, fast: bool) -> Report:
    """Sinks are one per head: scores (l, t) without their head axis are refused with a ValueError."""
    row = refused("softmax_with_sink_forward of (l, t) scores", ValueError, F.softmax_with_sink_forward,
                  np.zeros((3, 4)), np.zeros(3))
    return Report(title="the sink softmax needs a head axis", rows=[row], method="the call must raise",
                  dtype=str(np.dtype(dtype)), atol=0.0, rtol=0.0, labels=("numpy", "expected"))


def sink_softmax_large(dtype: np.dtype) -> Target:
    """The sink softmax on scores and sinks of about +-1000: the shift by the row maximum keeps exp finite."""
    scores, sinks = normal(dtype, (2, 3, 4, 5), (3,), seed=81)
    scores, sinks = (1000 * scores).astype(dtype), (1000 * sinks).astype(dtype)
    return Target((scores, sinks), F.softmax_with_sink_forward, F.softmax_with_sink_backward,
                  torch_forward=torch_ops.softmax_with_sink)


def float32_score_mod(dtype: np.dtype) -> Target:
    """ALiBi's float64 slopes on float32 scores, queries offset by 2: the slopes are cast to the scores' dtype."""
    (scores,) = normal(np.float32, (2, 3, 4, 5), seed=83)
    options = dict(query_pos=np.arange(4) + 2, key_pos=np.arange(5), alibi_slopes=2.0 ** -np.arange(1.0, 4.0))
    return Target((scores,), functools.partial(F.score_mod_forward, **options), F.score_mod_backward,
                  torch_forward=functools.partial(torch_ops.score_mod, **options))


def float32_alibi(dtype: np.dtype, impl: str) -> Target:
    """ALiBi with float64 slopes on float32 q, k, v (the slopes are cast, as torch casts a bias), causal."""
    return options_target(np.float32, (1, 2, 5, 4), (1, 2, 6, 4), (1, 2, 6, 3), impl=impl, alibi=True,
                          is_causal=True)


def tail_points() -> np.ndarray:
    """x of both signs in every branch of Cody's erf (|x| <= 0.46875, up to 4, beyond 4), out to |x| = 26."""
    magnitudes = np.concatenate([np.linspace(0.0, 0.46875, 20), np.linspace(0.47, 4.0, 60),
                                 np.geomspace(4.001, 26, 40)])
    return np.concatenate([magnitudes, -magnitudes[1:]])


def erf_tails_check(dtype: np.dtype, fast: bool) -> Report:
    """erf and erfc against Python's math.erf and math.erfc, relative to each value (float64)."""
    x = tail_points()
    rows = [compare(name, function(x), np.array([reference(v) for v in x]), *ERF_TOLERANCE)
            for name, function, reference in (("erf", erf, math.erf), ("erfc", erfc, math.erfc))]
    return Report(title="erf and erfc in every branch, both signs, out to |x| = 26", rows=rows,
                  method="against math.erf and math.erfc, per element", dtype="float64", atol=ERF_TOLERANCE[0],
                  rtol=ERF_TOLERANCE[1], labels=("numpy", "math"))


def gelu_tails_check(dtype: np.dtype, fast: bool) -> Report:
    """The exact GELU and its derivative where x Phi(x) is tiny (x << 0), from math.erfc, relative per element.

    ``out = x erfc(-x / sqrt 2) / 2`` and ``dx = dout (Phi(x) + x phi(x))``; torch's own
    ``(1 + erf)`` form cancels there, so the reference is Python's math module.
    """
    y = tail_points()
    x = y[np.abs(y) <= 8] * math.sqrt(2.0)  # beyond, rounding x / sqrt 2 costs erfc 2 y^2 ulps
    dout = np.random.default_rng(82).standard_normal(x.shape)
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    pdf = np.array([math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in x])
    out, cache = F.gelu_forward(x)
    rows = [compare("output", out, x * cdf, *TAIL_TOLERANCE),
            compare("dx", F.gelu_backward(dout, cache), dout * (cdf + x * pdf), *TAIL_TOLERANCE)]
    return Report(title="exact GELU in its tails", rows=rows, method="against math.erfc and math.exp, per element",
                  dtype="float64", atol=TAIL_TOLERANCE[0], rtol=TAIL_TOLERANCE[1], labels=("numpy", "math"))


def sdpa_output_check(pair: Any, dtype: np.dtype, fast: bool) -> Report:
    """``pair.scaled_dot_product_attention`` returns ``pair.attention_forward``'s output, exactly, in every case."""
    q, k, v = normal(dtype, (2, 4, 5, 3), (2, 2, 6, 3), (2, 2, 6, 2), seed=77)
    mask = np.random.default_rng(78).random((5, 6)) > 0.3
    cases = {"plain": {}, "mask-scale": {"attn_mask": mask, "scale": 0.3}, "causal": {"is_causal": True},
             "dropout": {"dropout_p": 0.3, "rng": 5}, "softcap-window": {"softcap": 2.0, "window": (1, 2)}}
    rows = []
    for label, options in cases.items():
        def call(function: Any, options: dict = options) -> np.ndarray:
            seeded = {**options, "rng": np.random.default_rng(options["rng"])} if "rng" in options else options
            return function(q, k, v, **seeded)

        expected = call(pair.attention_forward)[0]
        rows.append(compare(f"output ({label})", call(pair.scaled_dot_product_attention), expected, EXACT, 0.0))
    return Report(title=f"{pair.__name__}.scaled_dot_product_attention", rows=rows,
                  method=f"against {pair.__name__}.attention_forward's output (exactly)", dtype=str(np.dtype(dtype)),
                  atol=EXACT, rtol=0.0, labels=("function", "forward"))


def sdpa_torch_check(function: Any) -> Report:
    """``function`` against torch's scaled_dot_product_attention, causal with a boolean mask and a scale."""
    torch = require_torch()
    q, k, v = normal(np.float64, (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 2), seed=79)
    mask = np.random.default_rng(80).random((5, 7)) > 0.3
    mask[:, 0] = True
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a) for a in (q, k, v)), attn_mask=torch.from_numpy(mask), scale=0.4).numpy()
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float64)]
    row = compare("output", function(q, k, v, attn_mask=mask, scale=0.4), expected, atol, rtol)
    return Report(title=f"{function.__module__}.scaled_dot_product_attention against torch", rows=[row],
                  method=f"torch {torch.__version__}, float64", dtype="float64", atol=atol, rtol=rtol,
                  labels=("numpy", "torch"))


def own_check_entry(name: str, check: Any) -> Entry:
    """An entry whose check is ``check(dtype, fast)`` alone (a Report), with no finite differences of its own."""
    return Entry(name, lambda dtype: TierTarget((), own_check=functools.partial(check, dtype)))


def sdpa_entry(label: str, pair: Any) -> Entry:
    function = pair.scaled_dot_product_attention

    def build(dtype: np.dtype) -> TierTarget:
        return TierTarget((), own_check=functools.partial(sdpa_output_check, pair, dtype),
                          torch_forward=function, own_torch=functools.partial(sdpa_torch_check, function))

    return Entry(f"edges/scaled_dot_product_attention/{label}", build)


ENTRIES: list[Entry] = [
    Entry("edges/cross_entropy/one-kept-target", functools.partial(cross_entropy_edge, kept=1)),
    Entry("edges/cross_entropy/all-ignored-sum", functools.partial(cross_entropy_edge, kept=0, reduction="sum")),
    Entry("edges/cross_entropy/all-ignored-mean", all_ignored_mean),
    Entry("edges/cross_entropy/one-class", functools.partial(cross_entropy_edge, kept=4, classes=1)),
    own_check_entry("edges/cross_entropy/number-dout", number_dout_check),
    Entry("edges/embedding/padding-idx-0", functools.partial(padding_idx_edge, padding_idx=0)),
    Entry("edges/embedding/padding-idx-negative", functools.partial(padding_idx_edge, padding_idx=-1)),
    Entry("edges/append_keys/bias", functools.partial(append_keys_target, add_zero=False)),
    Entry("edges/append_keys/bias-zero", functools.partial(append_keys_target, add_zero=True)),
    own_check_entry("edges/erf/every-branch", erf_tails_check),
    own_check_entry("edges/gelu/tails", gelu_tails_check),
    own_check_entry("edges/kernels/recycled-weights", recycled_weights_check),
    own_check_entry("edges/kernels/flash-parallel", flash_parallel_check),
    own_check_entry("edges/kernels/dense-large-weights", large_weights_check),
    own_check_entry("edges/kernels/linear-parallel", linear_parallel_check),
    Entry("edges/kernels/dense-row-longer-than-a-tile", lambda dt: as_tier(
        attention_target(dt, (1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3), is_causal=True),
        context=functools.partial(tile_limits, bytes=1))),  # a row of scores exceeds the tile budget: 1-row tiles
    Entry("edges/sinks/scores-1000", sink_softmax_large),
    own_check_entry("edges/sinks/no-head-axis", sink_without_heads_check),
    Entry("edges/score_mod/alibi-float32", float32_score_mod),
    *[Entry(f"edges/attention/{impl}/alibi-float32", functools.partial(float32_alibi, impl=impl))
      for impl in MODERN_IMPLS],
    # Every score near -slope 1e5, where exp needs its shift; in float64 always (float32 cannot hold the
    # scores' differences at 1e5).
    *[Entry(f"edges/attention/{impl}/alibi-far", lambda dt, impl=impl: options_target(
        np.float64, (1, 2, 4, 3), (1, 2, 6, 3), (1, 2, 6, 2), impl=impl, alibi=True, query_offset=100_000))
      for impl in MODERN_IMPLS],
    *[Entry(f"edges/attention/{impl}/options-{label}", functools.partial(
        options_target, q_shape=(*batch, 4, 3, 4), k_shape=(*batch, 2, 5, 4), v_shape=(*batch, 2, 5, 3), impl=impl,
        alibi=True, sinks=True, softcap=2.0, is_causal=True, query_offset=2))
      for impl in MODERN_IMPLS for label, batch in (("no-batch", ()), ("two-batch-axes", (2, 2)))],
    *[Entry(f"edges/attention/{impl}/options-unbatched", functools.partial(
        options_target, q_shape=(3, 4), k_shape=(5, 4), v_shape=(5, 3), impl=impl, softcap=2.0, is_causal=True,
        window=(2, None), query_offset=1)) for impl in MODERN_IMPLS],  # (L, E): no head axis for per-head options
    *[Entry(f"edges/attention/{impl}/no-heads", functools.partial(
        attention_target, q_shape=(2, 0, 3, 4), k_shape=(2, 0, 5, 4), v_shape=(2, 0, 5, 3), impl=impl))
      for impl in MODERN_IMPLS],
    *[Entry(f"edges/attention/{impl}/mask-{kind}-{'x'.join(map(str, shape))}", functools.partial(
        attention_target, q_shape=(2, 2, 7, 3), k_shape=(2, 2, 9, 3), v_shape=(2, 2, 9, 2), impl=impl, mask=kind,
        mask_shape=shape, block_size=(2, 3)))  # masks that broadcast along rows or keys, in tiles of 2 x 3
      for impl in MODERN_IMPLS for kind, shape in (("bool", (9,)), ("float", (1, 9)), ("bool", (2, 1, 7, 1)))],
    *[Entry(f"edges/attention/{impl}/no-keys", functools.partial(
        attention_target, q_shape=(2, 2, 3, 4), k_shape=(2, 2, 0, 4), v_shape=(2, 2, 0, 3), impl=impl))
      for impl in MODERN_IMPLS],
    *[Entry(f"edges/attention/{impl}/no-keys-alibi", functools.partial(
        options_target, q_shape=(2, 2, 3, 4), k_shape=(2, 2, 0, 4), v_shape=(2, 2, 0, 3), impl=impl, alibi=True))
      for impl in MODERN_IMPLS],
    sdpa_entry("functional", F),
    sdpa_entry("kernels", kernels),
]


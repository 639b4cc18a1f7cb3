"""The bug zoo: real mistakes in hand-written attention, and the check that catches each.

Every backward bug is planted in a copy of the library's textbook pair
(:func:`planted`): the same source with one line replaced, marked ``# WRONG``. Two kinds:

* backward bugs: the backward does not differentiate its forward. Central
  finite differences catch them (and point at the elements that are off);
* forward bugs: the forward computes the wrong function and the backward
  differentiates *that* function faithfully, so finite differences agree with
  it. Only a reference catches them: torch (``compare_with_torch``), or,
  without torch, an independent loop-by-loop NumPy forward.

``detect(bug)`` runs the check a bug belongs to; ``examples/bug_zoo.py`` runs them all.
"""

from __future__ import annotations

import functools
import inspect
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from numpy_attention import functional as F
from numpy_attention.functional.heads import merge_heads, split_heads

from . import torch_ops
from .check import check
from .reference import compare_with_reference, compare_with_torch, torch_available
from .report import Report

FINITE_DIFFERENCES = "finite differences"
REFERENCE = "reference"


# --- planting: a copy of a textbook function with one line replaced ----------------------------

def planted(function: Callable, *replacements: tuple[str, str]) -> Callable:
    """A copy of ``function`` (a textbook pair of numpy_attention) with lines of its source replaced.

    Each replacement is (a whole line of the body, what stands there instead,
    marked ``# WRONG``); the line must occur exactly once. The copy runs in the
    function's own module namespace, so it is the library's code but for the
    planted lines: the zoo never writes the math again.
    """
    function = inspect.unwrap(function)  # the function itself, not a decorator's wrapper (np.errstate)
    lines = textwrap.dedent(inspect.getsource(function)).split("\n")
    for line, wrong in replacements:
        found = [i for i, code in enumerate(lines) if code.strip() == line]
        if len(found) != 1:
            raise ValueError(f"{function.__qualname__} has no line {line!r} to plant a bug in (or several)")
        indent = lines[found[0]][: len(lines[found[0]]) - len(lines[found[0]].lstrip())]
        lines[found[0]] = indent + wrong
    source = "\n".join(lines)
    namespace = dict(function.__globals__)
    exec(compile(source, f"<{function.__qualname__}, planted>", "exec"), namespace)
    return namespace[function.__name__]


softmax_backward_without_rowsum = planted(
    F.softmax_backward,
    ("return softmax_grad(dout, cache.y, cache.axis)",
     "return cache.y * dout  # WRONG: dx = y * (dout - rowsum(dout * y))"),
)
linear_backward_bias_of_one_batch = planted(
    F.linear_backward,
    ("dbias = dout_rows.sum(axis=0) if cache.has_bias else None",
     "dbias = dout[-1].reshape(-1, weight.shape[0]).sum(axis=0) if cache.has_bias else None  # WRONG: every row"),
)
# The attention backward's mistakes, each planted in a copy of the textbook attention_backward.
ATTENTION_MISTAKES: dict[str, tuple[tuple[str, str], ...]] = {
    "missing-scale": (
        ("dQ = scale * (dS @ K)", "dQ = dS @ K  # WRONG: S = scale * Q K^T, so dQ = scale * dS K"),
        ("dK = scale * (dS.swapaxes(-1, -2) @ Q)", "dK = dS.swapaxes(-1, -2) @ Q  # WRONG: scale * dS^T Q"),
    ),
    "dk-transpose": (
        ("dK = scale * (dS.swapaxes(-1, -2) @ Q)", "dK = scale * (dS @ Q)  # WRONG: dS^T Q"),
    ),
    "dropout-forgotten": (
        ("dP = (dO @ V.swapaxes(-1, -2)) * Z", "dP = dO @ V.swapaxes(-1, -2)  # WRONG: the forward dropped by Z"),
    ),
    "gqa-one-head": (
        ("grads = unbroadcast(dQ, q.shape), sum_kv(dK, k.shape), sum_kv(dV, v.shape)",
         "grads = unbroadcast(dQ, q.shape), dK[..., :: q.shape[-3] // k.shape[-3], :, :], "
         "dV[..., :: q.shape[-3] // k.shape[-3], :, :]  # WRONG: one query head's share, not the group's sum"),
    ),
    "causal-leak": (
        ("dS = score_mod_backward(P * (dP - D), mod)",
         "dS = softmax(scale * (Q @ K.swapaxes(-1, -2))) * (dP - D)  # WRONG: P recomputed without the causal mask"),
    ),
}


# --- multi-head self-attention as a pair: projections, split heads, attention, merge, output ---

class MultiHeadCache(NamedTuple):
    projections: tuple  # LinearCache of q, k, v
    attention: F.AttentionCache
    output: F.LinearCache
    num_heads: int
    split_heads: Callable
    merge_heads: Callable


def split_heads_by_reshape(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(B, T, D) read as if it were laid out (B, H, T, d): every "head" mixes tokens and features."""
    batch, seq, dim = x.shape
    return x.reshape(batch, num_heads, seq, dim // num_heads)  # WRONG: reshape(B, T, H, d), then swap T and H


def merge_heads_by_reshape(x: np.ndarray) -> np.ndarray:
    """The inverse of :func:`split_heads_by_reshape`: consistent with the wrong split, so its backward is right.

    Right for the wrong split, that is: the (B, H, T, d) heads of an einsum
    written for (B, T, H, d) read back the same wrong way.
    """
    batch, heads, seq, head_dim = x.shape
    return x.reshape(batch, seq, heads * head_dim)


def multi_head_forward(x: np.ndarray, w_q: np.ndarray, b_q: np.ndarray, w_k: np.ndarray, b_k: np.ndarray,
                       w_v: np.ndarray, b_v: np.ndarray, w_o: np.ndarray, b_o: np.ndarray, *, num_heads: int,
                       scale_dim: str = "head_dim", heads_layout: str = "permute") -> tuple[np.ndarray, MultiHeadCache]:
    """Self-attention ``out = merge(attention(split(x W_q^T), ...)) W_o^T + b_o``, x (B, T, D).

    ``scale_dim="embed_dim"`` and ``heads_layout="reshape"`` are the zoo's forward bugs.
    """
    split, merge = (split_heads, merge_heads) if heads_layout == "permute" else (
        split_heads_by_reshape, merge_heads_by_reshape)
    embed_dim = x.shape[-1]
    head_dim = embed_dim // num_heads
    scale = 1 / math.sqrt(head_dim if scale_dim == "head_dim" else embed_dim)  # WRONG when embed_dim
    projected = [F.linear_forward(x, w, b) for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v))]
    heads = [split(p, num_heads) for p, _ in projected]
    attended, attention_cache = F.attention_forward(*heads, scale=scale)
    out, output_cache = F.linear_forward(merge(attended), w_o, b_o)
    cache = MultiHeadCache(tuple(c for _, c in projected), attention_cache, output_cache, num_heads, split, merge)
    return out, cache


def multi_head_backward(dout: np.ndarray, cache: MultiHeadCache) -> tuple:
    """(dx, dw_q, db_q, dw_k, db_k, dw_v, db_v, dw_o, db_o): each step's backward in reverse.

    The backward of ``merge`` is ``split`` and vice versa; dx sums the three projections' dx.
    """
    d_merged, dw_o, db_o = F.linear_backward(dout, cache.output)
    d_heads = F.attention_backward(cache.split_heads(d_merged, cache.num_heads), cache.attention)
    dx, param_grads = 0.0, []
    for d_head, projection_cache in zip(d_heads, cache.projections):
        d_x, d_w, d_b = F.linear_backward(cache.merge_heads(d_head), projection_cache)
        dx = dx + d_x
        param_grads += [d_w, d_b]
    return (dx, *param_grads, dw_o, db_o)


def loop_multi_head_attention(x: np.ndarray, w_q: np.ndarray, b_q: np.ndarray, w_k: np.ndarray, b_k: np.ndarray,
                              w_v: np.ndarray, b_v: np.ndarray, w_o: np.ndarray, b_o: np.ndarray, *,
                              num_heads: int) -> np.ndarray:
    """An independent reference: one batch element and one head at a time, heads as column slices."""
    batch, seq, embed_dim = x.shape
    head_dim = embed_dim // num_heads
    out = np.empty((batch, seq, w_o.shape[0]))
    for b in range(batch):
        q, k, v = x[b] @ w_q.T + b_q, x[b] @ w_k.T + b_k, x[b] @ w_v.T + b_v
        heads = []
        for h in range(num_heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(head_dim)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            heads.append(weights / weights.sum(axis=1, keepdims=True) @ v[:, cols])
        out[b] = np.concatenate(heads, axis=1) @ w_o.T + b_o
    return out


# --- the zoo -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A pair to check, its inputs, and the references that can judge its forward."""

    forward: Callable
    backward: Callable
    inputs: tuple
    torch_forward: Callable | None = None
    numpy_reference: Callable | None = None


@dataclass(frozen=True)
class Bug:
    name: str
    mistake: str
    caught_by: str  # FINITE_DIFFERENCES or REFERENCE
    wrong: Callable[[], Case]
    right: Callable[[], Case]


def _normal(*shapes: tuple, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def _attention_case(shapes: tuple, mistake: str | None, **options: Any) -> Case:
    forward = functools.partial(F.attention_forward, **options, rng=np.random.default_rng(3))
    backward = F.attention_backward if mistake is None else planted(F.attention_backward, *ATTENTION_MISTAKES[mistake])
    return Case(forward, backward, tuple(_normal(*shapes)))


def _attention_bug(name: str, mistake: str, description: str, shapes: tuple, **options: Any) -> Bug:
    """A mistake planted in the textbook ``attention_backward``, and the textbook backward itself."""
    return Bug(name, description, FINITE_DIFFERENCES,
               wrong=lambda: _attention_case(shapes, mistake, **options),
               right=lambda: _attention_case(shapes, None, **options))


def _multi_head_case(**options: Any) -> Case:
    embed_dim, num_heads = 8, 2
    x, *params = _normal((2, 4, embed_dim), *[(embed_dim, embed_dim), (embed_dim,)] * 4, seed=5)
    params = [p / math.sqrt(embed_dim) for p in params]  # xavier-like: softmax neither flat nor saturated
    names = [f"{p}_proj.{kind}" for p in ("q", "k", "v", "out") for kind in ("weight", "bias")]

    def torch_forward(x: Any, *weights: Any) -> Any:
        return torch_ops.multi_head_attention(dict(zip(names, weights)), x, num_heads=num_heads)

    return Case(functools.partial(multi_head_forward, num_heads=num_heads, **options), multi_head_backward,
                (x, *params), torch_forward=torch_forward,
                numpy_reference=functools.partial(loop_multi_head_attention, num_heads=num_heads))


QKV = ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3))  # L = 3 queries, S = 5 keys
SQUARE = ((1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3))  # L = S = 4
GQA = ((2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3))  # 4 query heads share 2 key/value heads
LINEAR = ((3, 4, 5), (6, 5), (6,))  # x (batch 3, seq 4, in 5), weight (6, 5), bias (6,)
BUGS: list[Bug] = [
    Bug("softmax-missing-rowsum", "softmax backward returns y * dout, dropping the - rowsum(dout * y) term",
        FINITE_DIFFERENCES,
        wrong=lambda: Case(F.softmax_forward, softmax_backward_without_rowsum, tuple(_normal((3, 5)))),
        right=lambda: Case(F.softmax_forward, F.softmax_backward, tuple(_normal((3, 5))))),
    _attention_bug("attention-missing-scale", "missing-scale",
                   "dQ and dK without the factor scale that multiplied Q K^T", QKV),
    _attention_bug("attention-dk-transpose-L!=S", "dk-transpose",
                   "dK = dS Q instead of dS^T Q, with L != S: the shapes disagree", QKV),
    _attention_bug("attention-dk-transpose-L=S", "dk-transpose",
                   "dK = dS Q instead of dS^T Q, with L == S: only the numbers tell", SQUARE),
    _attention_bug("attention-dropout-forgotten", "dropout-forgotten",
                   "the backward ignores the dropout mask the forward applied", QKV, dropout_p=0.3),
    Bug("linear-bias-not-summed", "dbias sums the rows of the last batch element, not of the whole batch",
        FINITE_DIFFERENCES,
        wrong=lambda: Case(F.linear_forward, linear_backward_bias_of_one_batch, tuple(_normal(*LINEAR))),
        right=lambda: Case(F.linear_forward, F.linear_backward, tuple(_normal(*LINEAR)))),
    _attention_bug("gqa-kv-grad-one-head", "gqa-one-head",
                   "grouped-query dK, dV taken from one query head instead of the group's sum", GQA),
    _attention_bug("causal-leak", "causal-leak",
                   "causal mask in the forward, but the backward recomputes the weights without it", SQUARE,
                   is_causal=True),
    Bug("mha-scale-embed-dim", "scores scaled by 1/sqrt(embed_dim) instead of 1/sqrt(head_dim)", REFERENCE,
        wrong=lambda: _multi_head_case(scale_dim="embed_dim"), right=lambda: _multi_head_case()),
    Bug("mha-heads-layout", "heads split by reshape(B, H, T, d) instead of reshape(B, T, H, d) + transpose",
        REFERENCE, wrong=lambda: _multi_head_case(heads_layout="reshape"), right=lambda: _multi_head_case()),
]


@dataclass(frozen=True)
class Detection:
    """How a check judged a case: ``caught`` (failed or could not run), ``how`` in words, the report if any."""

    caught: bool
    how: str
    report: Report | None


def run_check(case: Case, method: str, *, fast: bool = False, use_torch: bool | None = None) -> Detection:
    """Run one check on a case: finite differences, or the reference (torch if available, else NumPy)."""
    try:
        if method == FINITE_DIFFERENCES:
            report = check(case.forward, case.backward, case.inputs, fast=fast)
        elif use_torch if use_torch is not None else torch_available():
            report = compare_with_torch(case.forward, case.backward, case.torch_forward, case.inputs)
        else:
            report = compare_with_reference(case.forward, case.numpy_reference, case.inputs, label="numpy loops")
    except (ValueError, TypeError) as err:
        return Detection(True, f"the check stopped: {type(err).__name__}: {err}", None)
    return Detection(not report.passed, report.summary(), report)


def detect(bug: Bug, *, fast: bool = False, use_torch: bool | None = None) -> Detection:
    """Run the check ``bug`` belongs to on its wrong version."""
    return run_check(bug.wrong(), bug.caught_by, fast=fast, use_torch=use_torch)


# --- the options of today's attention: RoPE's layout and the sinks' gradient -----------------------

def loop_rope_half_split(x: np.ndarray, *, base: float = 10000.0) -> np.ndarray:
    """An independent reference: Hugging Face's half-split RoPE one position and one pair at a time."""
    *_, length, dim = x.shape
    out = np.empty_like(x)
    for position in range(length):
        for i in range(dim // 2):
            angle = position * base ** (-2 * i / dim)
            a, b = x[..., position, i], x[..., position, i + dim // 2]
            out[..., position, i] = a * math.cos(angle) - b * math.sin(angle)
            out[..., position, i + dim // 2] = b * math.cos(angle) + a * math.sin(angle)
    return out


def _rope_case(interleaved: bool) -> Case:
    """RoPE for weights converted to Hugging Face's layout; ``interleaved=True`` is the wrong one for them."""
    forward = functools.partial(F.rope_forward, base=100.0, interleaved=interleaved)  # WRONG when interleaved
    return Case(forward, F.rope_backward, tuple(_normal((2, 3, 5, 8), seed=7)),
                torch_forward=functools.partial(torch_ops.rope, base=100.0, interleaved=False),
                numpy_reference=functools.partial(loop_rope_half_split, base=100.0))


# Query 0 sits before every key (query_offset -1 under a causal window): its row is the sink's alone.
SINK_VISIBLE = F.score_mods.visible(np.arange(4) - 1, np.arange(5), is_causal=True, window=(2, None))


def masked_sink_softmax_forward(S: np.ndarray, sinks: np.ndarray) -> tuple:
    """The sink softmax of scores S under :data:`SINK_VISIBLE` (the mask is a constant: no gradient)."""
    return F.softmax_with_sink_forward(np.where(SINK_VISIBLE, S, -np.inf), sinks)


def sink_softmax_backward_without_dsinks(dP: np.ndarray, cache: F.SoftmaxWithSinkCache) -> tuple:
    """The scores' gradient right, the sinks' left at zero, as a backward written before sinks existed."""
    dS, dsinks = F.softmax_with_sink_backward(dP, cache)
    return dS, np.zeros_like(dsinks)  # WRONG: dsinks = -sum(P_sink * D) over batch and rows


def _sink_case(backward: Callable) -> Case:
    return Case(masked_sink_softmax_forward, backward, tuple(_normal((2, 3, 4, 5), (3,), seed=8)),
                torch_forward=functools.partial(torch_ops.softmax_with_sink, visible=SINK_VISIBLE))


BUGS += [
    Bug("sink-gradient-missing", "attention sinks in the forward, but the backward returns dsinks = 0",
        FINITE_DIFFERENCES, wrong=lambda: _sink_case(sink_softmax_backward_without_dsinks),
        right=lambda: _sink_case(F.softmax_with_sink_backward)),
    Bug("rope-layouts-mixed", "RoPE in Meta's interleaved layout on weights meant for Hugging Face's rotate_half "
        "(half-split) layout", REFERENCE, wrong=lambda: _rope_case(interleaved=True),
        right=lambda: _rope_case(interleaved=False)),
]


# --- forward bugs of the options: the cap after the mask, the window's edge ------------------------

ATTENTION_FORWARD_MISTAKES: dict[str, tuple[tuple[str, str], ...]] = {
    "softcap-after-mask": (
        ("S, mod = score_mod_forward(scale * (Q @ K.swapaxes(-1, -2)), i, j, softcap=softcap, "
         "alibi_slopes=alibi_slopes)",
         "S, mod = score_mod_forward(scale * (Q @ K.swapaxes(-1, -2)), i, j, alibi_slopes=alibi_slopes)"),
        ("S = S + M  # (..., Hq, L, T)",
         "S, mod = score_mod_forward(S + M, i, j, softcap=softcap)  # WRONG: c tanh(-inf / c) = -c, not -inf"),
    ),
    "window-off-by-one": (
        ("M = additive_mask(attn_mask, visible(i, j, is_causal=is_causal, window=window), q.dtype)",
         "M = additive_mask(attn_mask, visible(i, j, is_causal=is_causal, window=(window[0] + 1, window[1])), "
         "q.dtype)  # WRONG: i - left <= j, not i - left - 1 <= j"),
    ),
}


def loop_attention_with_options(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, softcap: float | None = None,
                                window: tuple | None = None) -> np.ndarray:
    """An independent reference: causal attention one (batch, head, query) row at a time, keys j <= i only."""
    out = np.zeros(q.shape[:-1] + v.shape[-1:])
    left = None if window is None else window[0]
    for index in np.ndindex(*q.shape[:-2]):
        for i in range(q.shape[-2]):
            keys = [j for j in range(i + 1) if left is None or i - j <= left]
            scores = np.array([q[index][i] @ k[index][j] / math.sqrt(q.shape[-1]) for j in keys])
            if softcap is not None:
                scores = softcap * np.tanh(scores / softcap)
            weights = np.exp(scores - scores.max())
            out[index][i] = weights / weights.sum() @ v[index][keys]
    return out


def _causal_option_case(mistake: str | None, **options: Any) -> Case:
    """Causal attention with ``options`` on (1, 2, 6, 4) data of large scores, the textbook or a planted forward."""
    forward = F.attention_forward if mistake is None else planted(F.attention_forward,
                                                                   *ATTENTION_FORWARD_MISTAKES[mistake])
    q, k, v = _normal((1, 2, 6, 4), (1, 2, 6, 4), (1, 2, 6, 3), seed=9)
    return Case(functools.partial(forward, is_causal=True, **options), F.attention_backward, (3 * q, 3 * k, v),
                torch_forward=functools.partial(torch_ops.attention_with_options, is_causal=True, **options),
                numpy_reference=functools.partial(loop_attention_with_options, **options))


BUGS += [
    Bug("softcap-after-mask", "the soft-cap applied after the causal mask: a masked score becomes -c, not -inf, "
        "and every query sees the future", REFERENCE,
        wrong=lambda: _causal_option_case("softcap-after-mask", softcap=2.0),
        right=lambda: _causal_option_case(None, softcap=2.0)),
    Bug("window-off-by-one", "the sliding window's left edge one key too far (a window of W keys taken as "
        "left = W, not W - 1)", REFERENCE,
        wrong=lambda: _causal_option_case("window-off-by-one", window=(2, 0)),
        right=lambda: _causal_option_case(None, window=(2, 0))),
]

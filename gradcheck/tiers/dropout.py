"""The dropout tier: the mask is drawn, keeps about 1 - p of the weights, and the backward uses it.

Finite differences replay the generator, so they prove only that the backward
matches the forward; a forward that never drops anything agrees with itself, and
with torch when torch is handed our (absent) mask. Here the mask is read from
the outputs alone: with V = I (T x T), ``O = (P * Z) V = P * Z``, so each entry of O
is 0 (dropped) or ``P / (1 - p)`` (kept), with P from a call at p = 0. The checks:

* ``kept fraction``: within 5 binomial standard deviations ``sqrt(p (1 - p) / n)`` of
  1 - p (n entries; a two-sided chance of about 6e-7 for a right implementation);
* ``kept values``: ``O = P / (1 - p)`` where kept;
* ``another generator's mask``: a second generator's mask disagrees with the first at about
  2 p (1 - p) of the entries (a mask that ignores the generator, the same every step, fails);
  so do two heads' masks (one mask shared by every head fails);
* ``dq``, ``dk``, ``dv``: the backward of a seeded ``dO`` against the gradients of the
  mask that O shows: ``Z = O / P``, ``dV = O^T dO``, ``dS = P * (dO Z - rowsum(dO * O))``,
  ``dQ = c dS K``, ``dK = c dS^T Q``: a backward that ignores the mask, or draws another, fails.

``MultiHeadAttention`` (which returns the dropped-out weights W, as torch) gets the
same fraction and value rows from W, ``output`` = its output recomputed from W and
the parameters, and ``dvalue`` = the value gradient of W: ``W^T`` applied in reverse.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

import numpy_attention as na

from ..report import Report, Row, compare
from ..targets import Entry, Target, attention_pair, normal
from .common import TierTarget

Z_SCORE = 5.0  # standard deviations of the kept fraction allowed
EXACT = (1e-12, 1e-10)  # atol, rtol of two exact computations in float64


def kept_rows(dropped: np.ndarray, undropped: np.ndarray, p: float) -> list:
    """The ``kept fraction`` and ``kept values`` rows, from values after and before dropout (all > 0 before)."""
    kept = dropped != 0
    fraction, sigma = kept.mean(), math.sqrt(p * (1 - p) / kept.size)
    note = f"n = {kept.size}, tolerance {Z_SCORE:g} binomial std = {Z_SCORE * sigma:.3g}"
    return [compare("kept fraction", np.array(fraction), np.array(1 - p), Z_SCORE * sigma, 0.0, note=note),
            compare("kept values", dropped[kept], undropped[kept] / (1 - p), *EXACT)]


def fresh_draw_row(keep: np.ndarray, other: np.ndarray, p: float, name: str = "another generator's mask") -> Row:
    """Two independent masks (two generators', or two heads') disagree at a fraction 2 p (1 - p) of the entries."""
    disagree, expected = np.mean(keep != other), 2 * p * (1 - p)
    sigma = math.sqrt(expected * (1 - expected) / keep.size)
    return compare(name, np.array(disagree), np.array(expected), Z_SCORE * sigma, 0.0,
                   note=f"fraction of entries where two draws disagree, tolerance {Z_SCORE * sigma:.3g}")


def report(rows: list, what: str) -> Report:
    return Report(title=f"dropout tier ({what})", rows=rows, method="the mask read from the outputs (V = I)",
                  dtype="float64", atol=EXACT[0], rtol=EXACT[1], labels=("numpy", "the drawn mask"))


def attention_dropout_check(forward: Callable, backward: Callable, inputs: tuple, p: float, scale: float) -> Report:
    """The rows of the module docstring for a pair ``forward(q, k, v, dropout_p=..., rng=...)``."""
    q, k, v = inputs
    out, cache = forward(q, k, v, dropout_p=p, scale=scale, rng=np.random.default_rng(7))
    undropped, _ = forward(q, k, v, dropout_p=0.0, scale=scale)
    dout = np.random.default_rng(8).standard_normal(out.shape)
    dq, dk, dv = backward(dout, cache)
    keep = out / undropped  # Z: 0 or 1 / (1 - p)
    D = np.sum(dout * out, axis=-1, keepdims=True)
    dS = undropped * (dout * keep - D)
    other, _ = forward(q, k, v, dropout_p=p, scale=scale, rng=np.random.default_rng(17))
    rows = kept_rows(out, undropped, p) + [
        fresh_draw_row(out != 0, other != 0, p),
        fresh_draw_row(out[..., 0, :, :] != 0, out[..., 1, :, :] != 0, p, "head 1's mask against head 0's"),
        compare("dq", dq, scale * dS @ k, *EXACT),
        compare("dk", dk, scale * dS.swapaxes(-1, -2) @ q, *EXACT),
        compare("dv", dv, out.swapaxes(-1, -2) @ dout, *EXACT),
    ]
    return report(rows, f"p = {p}")


def attention_dropout_target(dtype: np.dtype, impl: str, p: float, shape: tuple = (2, 4, 32, 32)) -> Target:
    """q, k (B, H, L, E = 4), V = I (T x T) for every head; the flash pairs in 8 x 8 blocks; no B given (H, L, T)."""
    *batch, heads, queries, keys = shape
    q, k = normal(np.float64, (*batch, heads, queries, 4), (*batch, heads, keys, 4), seed=40)
    v = np.broadcast_to(np.eye(keys), (*batch, heads, keys, keys)).copy()
    forward, backward = attention_pair(impl, 8)
    check = functools.partial(attention_dropout_check, forward, backward, (q, k, v), p, 0.5)
    return TierTarget((q, k, v), functools.partial(forward, scale=0.5), backward, own_check=lambda fast: check())


def mha_dropout_check(module: na.MultiHeadAttention, query: np.ndarray, key: np.ndarray, value: np.ndarray,
                      p: float) -> Report:
    """MHA's dropped-out per-head weights W: fraction and values against eval mode, the output and dvalue from W."""
    state = module.rng.bit_generator.state
    module.eval()
    _, undropped = module(query, key, value, average_attn_weights=False)
    module.train()
    out, weights = module(query, key, value, average_attn_weights=False)
    dout = np.random.default_rng(9).standard_normal(out.shape)
    _, _, dvalue = module.backward(dout)
    module.zero_grad()
    module.rng.bit_generator.state = state
    params, heads = module.params, module.num_heads

    def split(x: np.ndarray) -> np.ndarray:  # (N, S, E) -> (N, H, S, D)
        return x.reshape(*x.shape[:2], heads, -1).swapaxes(1, 2)

    values = split(value @ params["v_proj.weight"].T + params["v_proj.bias"])
    attended = (weights @ values).swapaxes(1, 2).reshape(out.shape)
    d_attended = split(dout @ params["out_proj.weight"])  # (N, H, L, D)
    d_values = (weights.swapaxes(-1, -2) @ d_attended).swapaxes(1, 2).reshape(value.shape[0], value.shape[1], -1)
    rows = kept_rows(weights, undropped, p) + [
        compare("output", out, attended @ params["out_proj.weight"].T + params["out_proj.bias"], *EXACT),
        compare("dvalue", dvalue, d_values @ params["v_proj.weight"], *EXACT),
    ]
    return report(rows, f"MultiHeadAttention, p = {p}")


def mha_dropout_target(dtype: np.dtype, impl: str, p: float) -> Target:
    """MHA, 4 heads, batch 2, 24 queries and 24 keys (batch first), biases non-zero."""
    module = na.MultiHeadAttention(8, 4, dropout=p, batch_first=True, impl=impl, rng=np.random.default_rng(41))
    for name, value in module.params.items():
        if "bias" in name:
            value[...] = np.random.default_rng(42).standard_normal(value.shape)
    query, key, value = normal(np.float64, (2, 24, 8), (2, 24, 8), (2, 24, 8), seed=43)
    check = functools.partial(mha_dropout_check, module, query, key, value, p)
    return TierTarget((query, key, value), module=module, own_check=lambda fast: check())


def dropout_entries(impl: str) -> list[Entry]:
    return [
        Entry(f"dropout/{impl}/p=0.3", lambda dt: attention_dropout_target(dt, impl, 0.3)),
        Entry(f"dropout/{impl}/p=0.7-L<T", lambda dt: attention_dropout_target(dt, impl, 0.7, (1, 4, 24, 40))),
        Entry(f"dropout/{impl}/p=0.4-no-batch", lambda dt: attention_dropout_target(dt, impl, 0.4, (3, 32, 32))),
    ]


ENTRIES: list[Entry] = [entry for impl in ("dense", "flash", "textbook", "textbook-flash")
                        for entry in dropout_entries(impl)]
ENTRIES += [Entry(f"dropout/MultiHeadAttention/{impl}-p=0.25", lambda dt, impl=impl: mha_dropout_target(
    dt, impl, 0.25)) for impl in ("dense", "textbook")]

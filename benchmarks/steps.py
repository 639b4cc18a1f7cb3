"""The steps from the textbook pair to the kernels, each timed on its own: ``python -m benchmarks.steps``.

Every step is a pair of candidates computing the same numbers, the plain way
and the kernel's way, timed in alternating blocks in one process (see
:mod:`benchmarks.timing`); the table gives each one's median time and the
median of the per-round ratios. docs/performance.md records a run and names
the test that proves each step exact.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Callable

import numpy as np

from numpy_attention import functional, kernels
from numpy_attention.kernels import buffers, schedule
from numpy_attention.kernels.softmax import softmax_rows

from .timing import alternate, median_ratio

Step = tuple[str, dict[str, Callable[[], Any]]]


def inputs(shape: tuple, dtype: type, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(4)]


def fwd_bwd(forward: Callable, backward: Callable, q, k, v, dout, **options) -> Callable[[], Any]:
    def step():
        out, cache = forward(q, k, v, **options)
        return backward(dout, cache)

    return step


@contextlib.contextmanager
def patched(module: Any, **values: Any):
    """Module constants set for the duration of one call (a step's "before" setting)."""
    old = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


def under(context: Callable[[], Any], fn: Callable[[], Any]) -> Callable[[], Any]:
    def step():
        with context():
            return fn()

    return step


def steps(size: dict, dtype: type) -> list[Step]:
    b, h, n, e = size["batch"], size["heads"], size["seq"], size["head_dim"]
    q, k, v, dout = inputs((b, h, n, e), dtype)
    scale = 1.0 / np.sqrt(e)
    probs = softmax_rows((q * scale) @ k.swapaxes(-1, -2))
    d_probs = dout @ v.swapaxes(-1, -2)
    out = probs @ v
    tile = ((q[0, 0, :64] * scale) @ k[0, 0].T).copy()
    dense, textbook = (kernels.attention_forward, kernels.attention_backward), (
        functional.attention_forward, functional.attention_backward)
    return [
        ("the whole pair: textbook -> dense kernel, fwd+bwd", {
            "textbook": fwd_bwd(*textbook, q, k, v, dout), "kernel": fwd_bwd(*dense, q, k, v, dout)}),
        ("scale Q (L x E) instead of the scores (L x T)", {
            "scale * (Q K^T)": lambda: scale * (q @ k.swapaxes(-1, -2)),
            "(scale Q) K^T": lambda: (q * scale) @ k.swapaxes(-1, -2)}),
        ("D = rowsum(dO * O) instead of rowsum(dP * P)", {
            "rowsum(dP * P)": lambda: np.sum(d_probs * probs, axis=-1, keepdims=True),
            "rowsum(dO * O)": lambda: np.sum(dout * out, axis=-1, keepdims=True)}),
        ("row tiles kept in cache: the forward's passes per tile, not per array", {
            "whole heads": under(lambda: patched(schedule, TILE_BYTES=1 << 40, TILE_ROWS=1 << 30),
                                 lambda: kernels.attention_forward(q, k, v)),
            "tiles": lambda: kernels.attention_forward(q, k, v)}),
        ("causal tiles stop at their last query's key (fwd+bwd; not causal vs causal)", {
            "not causal": fwd_bwd(*dense, q, k, v, dout),
            "causal": fwd_bwd(*dense, q, k, v, dout, is_causal=True)}),
        ("heads on the cores with a one-thread BLAS (fwd+bwd)", {
            "heads in turn": under(lambda: patched(schedule, PARALLEL_MIN_SCORES=1 << 62),
                                   fwd_bwd(*dense, q, k, v, dout)),
            "heads on cores": fwd_bwd(*dense, q, k, v, dout)}),
        ("the bounded softmax skips its shift (one 64-row tile)", {
            "shifted": lambda: softmax_rows(tile.copy(), shift=True),
            "bounded": lambda: softmax_rows(tile.copy(), shift=False)}),
        ("recycled weights memory (fwd+bwd)", {
            "fresh memory": under(lambda: patched(buffers, MAX_IDLE_BYTES=0), fwd_bwd(*dense, q, k, v, dout)),
            "recycled": fwd_bwd(*dense, q, k, v, dout)}),
    ]


SIZES = {"default": {"batch": 4, "heads": 8, "seq": 512, "head_dim": 64},
         "quick": {"batch": 1, "heads": 2, "seq": 64, "head_dim": 16}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks the harness runs")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "default"]
    rounds = args.rounds or (1 if args.quick else 5)
    print(f"{args.dtype}, B={size['batch']} H={size['heads']} L=T={size['seq']} E={size['head_dim']}, "
          f"{rounds} rounds (median ms; ratio = after / before, median of per-round ratios)")
    for name, candidates in steps(size, np.dtype(args.dtype).type):
        times = alternate(candidates, rounds, 1 if args.quick else 3, 0.0 if args.quick else 0.2)
        (before, before_times), (after, after_times) = times.items()
        ratio, _ = median_ratio(after_times, before_times)
        print(f"- {name}: {before} {np.median(before_times) * 1e3:.2f} ms, {after} "
              f"{np.median(after_times) * 1e3:.2f} ms, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()

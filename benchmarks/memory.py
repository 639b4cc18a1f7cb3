"""Peak memory and time of attention forward + backward: the naive pair against the tiled one.

    python benchmarks/memory.py [--sizes 1024 2048 4096 8192 16384] [--json PATH]

One head, E = Ev = 64, float32, L = S. Memory is the peak that ``tracemalloc``
traces (it sees NumPy's buffers) while forward and backward run; q, k, v and
dout are allocated before tracing starts, so they are not counted. "extra"
is that peak minus the results (out, dq, dk, dv): the working memory. The
naive pair needs several L x S arrays, so it grows as L^2; a naive size whose
predicted peak (extrapolated as L^2 from the size before) exceeds
``--naive-budget-gib`` is skipped and reported as such. The tiled pair keeps
one log-sum-exp per query row and one tile at a time, so it grows as L.

Time is the median wall time over ``--repeats`` rounds, naive and tiled
alternating within each round so that a noisy machine slows both alike; the
ratio is the median of the per-round ratios. On a busy machine a multi-threaded
BLAS waits for its threads; ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``)
gives steadier timings, and the JSON record notes these variables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from numpy_attention.attention_impls import ATTENTION_IMPLS  # noqa: E402

IMPLS = ("naive", "flash")
# The rows are named for what they hold: the dense kernel ("naive": it forms L x S) and the tiled kernel.
KERNELS = {"naive": "dense", "flash": "flash"}
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MIB = 2**20


def make_inputs(length: int, head_dim: int, dtype: np.dtype, seed: int = 0) -> tuple[np.ndarray, ...]:
    """q, k, v and an upstream gradient dout, each (1, length, head_dim): one head."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((1, length, head_dim)).astype(dtype) for _ in range(4))


def forward_backward(impl: str, q: np.ndarray, k: np.ndarray, v: np.ndarray, dout: np.ndarray) -> list[np.ndarray]:
    """One forward and one backward through ``ATTENTION_IMPLS[impl]``: returns [out, dq, dk, dv]."""
    forward, backward = ATTENTION_IMPLS[KERNELS[impl]]
    out, cache = forward(q, k, v)
    return [out, *backward(dout, cache)]


def peak_memory(impl: str, length: int, head_dim: int = 64, dtype: np.dtype = np.float32) -> dict:
    """Peak traced bytes of forward + backward, and that peak minus the results (the working memory)."""
    q, k, v, dout = make_inputs(length, head_dim, dtype)
    tracemalloc.start()
    try:
        results = forward_backward(impl, q, k, v, dout)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result_bytes = sum(x.nbytes for x in results)
    return {"peak_bytes": peak, "extra_bytes": peak - result_bytes, "result_bytes": result_bytes}


def wall_times(impls: list[str], length: int, repeats: int, head_dim: int = 64, dtype=np.float32) -> dict:
    """Wall seconds of forward + backward per impl, alternating impls within each of ``repeats`` rounds."""
    inputs = make_inputs(length, head_dim, dtype)
    for impl in impls:  # warm-up: first-touch page faults and BLAS start-up are not measured
        forward_backward(impl, *inputs)
    seconds: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(repeats):
        for impl in impls:
            start = time.perf_counter()
            forward_backward(impl, *inputs)
            seconds[impl].append(time.perf_counter() - start)
    return seconds


def run(sizes: list[int], repeats: int, naive_budget_gib: float, head_dim: int = 64, dtype=np.float32) -> dict:
    """Measure every size; returns the JSON-ready record (one row per size)."""
    rows = []
    previous_naive = None  # (length, peak_bytes) of the last naive size measured
    for length in sorted(sizes):
        row: dict = {"length": length}
        impls = list(IMPLS)
        if previous_naive is not None:
            predicted = previous_naive[1] * (length / previous_naive[0]) ** 2
            basis = f"L^2 from L = {previous_naive[0]}"
        else:  # nothing measured yet: at least the cached weights and their gradient, two L x S arrays
            predicted = 2 * length * length * np.dtype(dtype).itemsize
            basis = "two L x S arrays"
        if predicted > naive_budget_gib * 2**30:
            impls.remove("naive")
            row["naive_skipped"] = (
                f"predicted peak {predicted / MIB:.0f} MiB ({basis}) exceeds the {naive_budget_gib:g} GiB budget"
            )
        for impl in impls:
            row[impl] = peak_memory(impl, length, head_dim, dtype)
        if "naive" in impls:
            previous_naive = (length, row["naive"]["peak_bytes"])
        seconds = wall_times(impls, length, repeats, head_dim, dtype)
        for impl in impls:
            row[impl]["seconds"] = seconds[impl]
            row[impl]["median_seconds"] = statistics.median(seconds[impl])
        if "naive" in impls:
            row["time_ratio_flash_over_naive"] = statistics.median(
                f / n for f, n in zip(seconds["flash"], seconds["naive"])
            )
        rows.append(row)
        print_row(row)
    return {
        "config": {"heads": 1, "head_dim": head_dim, "dtype": np.dtype(dtype).name, "repeats": repeats,
                   "naive_budget_gib": naive_budget_gib},
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "threads_env": {name: os.environ.get(name) for name in THREAD_VARIABLES}},
        "rows": rows,
    }


def print_header() -> None:
    print("| L | naive peak MiB | naive extra MiB | flash peak MiB | flash extra MiB "
          "| naive s | flash s | flash / naive time |")
    print("|---|---|---|---|---|---|---|---|")


def print_row(row: dict) -> None:
    def mib(impl: str, key: str) -> str:
        return f"{row[impl][key] / MIB:.1f}" if impl in row else "skipped"

    def secs(impl: str) -> str:
        return f"{row[impl]['median_seconds']:.3f}" if impl in row else "-"

    ratio = row.get("time_ratio_flash_over_naive")
    print(f"| {row['length']} | {mib('naive', 'peak_bytes')} | {mib('naive', 'extra_bytes')} "
          f"| {mib('flash', 'peak_bytes')} | {mib('flash', 'extra_bytes')} | {secs('naive')} | {secs('flash')} "
          f"| {'-' if ratio is None else f'{ratio:.2f}'} |", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                   help="sequence lengths L = S (small ones, e.g. 64 128, for a quick check)")
    p.add_argument("--repeats", type=int, default=5, help="timing rounds per size (naive and flash alternate)")
    p.add_argument("--naive-budget-gib", type=float, default=8.0,
                   help="skip naive sizes whose predicted peak exceeds this many GiB")
    p.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    print_header()
    record = run(args.sizes, args.repeats, args.naive_budget_gib)
    for row in record["rows"]:
        if "naive_skipped" in row:
            print(f"naive skipped at L = {row['length']}: {row['naive_skipped']}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()

"""Long sequences: tiled attention's memory grows as L, the naive pair's as L^2.

    python examples/long_sequence.py [--max-len 4096] [--repeats 1] [--outdir examples/figures]

First it checks, at L = 512 in float64, that the tiled pair (``impl="flash"``)
gives the naive pair's output and gradients. Then it runs forward + backward of
both for L = S = 256, 512, ..., --max-len (one head, E = 64, float32), using
benchmarks/memory.py to measure the peak traced memory and the wall time,
prints the table and plots both against L on log-log axes, with L and L^2
guide lines, in long_sequence.png. ``--max-len 16384 --repeats 3`` draws the
README figure (a few minutes; the naive pair then needs about 3 GiB).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import parser, pyplot, save

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import memory as memory_benchmark  # noqa: E402  (benchmarks/memory.py)

from numpy_attention.kernels import (  # noqa: E402
    attention_backward,
    attention_forward,
    flash_attention_backward,
    flash_attention_forward,
)


def largest_relative_difference(length: int = 512, head_dim: int = 64) -> float:
    """Max over out, dq, dk, dv of |flash - naive| / max|naive|, causal, float64."""
    q, k, v, dout = memory_benchmark.make_inputs(length, head_dim, np.float64)
    out, cache = attention_forward(q, k, v, is_causal=True)
    flash_out, flash_cache = flash_attention_forward(q, k, v, is_causal=True, block_size=100)
    pairs = zip([out, *attention_backward(dout, cache)], [flash_out, *flash_attention_backward(dout, flash_cache)])
    return max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in pairs)


def measured(rows: list[dict], impl: str, value) -> tuple[np.ndarray, np.ndarray]:
    """The lengths at which ``impl`` ran and ``value(row[impl])`` there."""
    rows = [row for row in rows if impl in row]
    return np.array([row["length"] for row in rows], dtype=float), np.array([value(row[impl]) for row in rows])


def plot(record: dict, outdir: Path) -> Path:
    plt = pyplot()
    rows = record["rows"]
    fig, (ax_memory, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((ax_memory, lambda m: m["peak_bytes"] / 2**20, {"naive": 2, "flash": 1}),
              (ax_time, lambda m: m["median_seconds"], {"naive": 2}))  # both times grow as L^2
    all_lengths = np.array([row["length"] for row in rows], dtype=float)
    for ax, value, guides in panels:
        for impl, style in (("naive", "o-"), ("flash", "s-")):
            ax.plot(*measured(rows, impl, value), style, label=impl)
        # Guide lines through the last (largest, least noisy) point: how each should grow.
        for impl, power in guides.items():
            lengths, values = measured(rows, impl, value)
            ax.plot(all_lengths, values[-1] * (all_lengths / lengths[-1]) ** power,
                    ":" if power == 2 else "--", color="gray", label=f"~ L^{power}" if power > 1 else "~ L")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L = S")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_memory.set_ylabel("peak traced memory, forward + backward (MiB)")
    ax_time.set_ylabel("wall time, forward + backward (s)")
    config = record["config"]
    ax_memory.set_title(f"Memory (1 head, E = {config['head_dim']}, {config['dtype']}; inputs not counted)")
    threads = ", ".join(f"{k}={v}" for k, v in record["machine"]["threads_env"].items() if v is not None)
    ax_time.set_title(f"Time (median of {config['repeats']}{', ' + threads if threads else ''})")
    skipped = [row["length"] for row in rows if "naive_skipped" in row]
    if skipped:
        ax_memory.annotate(f"naive skipped at L = {skipped}: over the memory budget",
                           (0.02, 0.02), xycoords="axes fraction", fontsize=8)
    path = save(fig, outdir, "long_sequence.png")
    plt.close(fig)
    return path


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--max-len", type=int, default=4096, help="the longest sequence (powers of two from 256)")
    p.add_argument("--repeats", type=int, default=1, help="timing rounds per length")
    args = p.parse_args()
    if args.max_len < 256:
        p.error(f"--max-len must be at least 256; got {args.max_len}")

    print(f"flash vs naive at L = 512, causal, float64: largest relative difference "
          f"{largest_relative_difference():.1e}")
    lengths = [2**n for n in range(8, int(np.log2(args.max_len)) + 1)]
    memory_benchmark.print_header()
    record = memory_benchmark.run(lengths, args.repeats, naive_budget_gib=8.0)
    plot(record, args.outdir)


if __name__ == "__main__":
    main()

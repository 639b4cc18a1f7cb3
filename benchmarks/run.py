"""Command line: time every case, print the table, write the JSON and the plot of the ratios."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .cases import Case, build_cases
from .timing import (
    add_blas_argument,
    alternate,
    blas_info,
    blas_note,
    load_average,
    matmul_peak,
    median_ratio,
    rerun_with_detected_blas,
)

# Beside the other git-ignored outputs, not in whatever folder the command runs from.
DEFAULT_PLOT = Path(__file__).resolve().parent / "results" / "benchmark_ratios.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="numpy_attention against PyTorch CPU: forward+backward times, ratios, GFLOP/s.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks the harness runs")
    parser.add_argument("--json", metavar="PATH", help="write every measured number to PATH")
    parser.add_argument("--plot", metavar="PATH", default=str(DEFAULT_PLOT), help="PNG of the ratios")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown (as in benchmarks/README.md)")
    parser.add_argument("--cases", nargs="*", metavar="WORD", help="run only cases whose name contains WORD")
    parser.add_argument("--rounds", type=int, help="rounds of alternating blocks (default 5, quick 1)")
    parser.add_argument("--runs", type=int, help="timed runs per block, the best counts (default 3, quick 1)")
    parser.add_argument("--pause", type=float, help="seconds of pause before each block (default 0.5)")
    parser.add_argument("--no-torch", action="store_true", help="NumPy-only figures even when torch is installed")
    add_blas_argument(parser)
    return parser.parse_args(argv)


def import_torch(threads: int, disabled: bool):
    """torch with as many threads as NumPy's BLAS, or None when it is not installed (or disabled)."""
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def run_case(case: Case, rounds: int, runs: int, pause: float, peaks: dict[str, float]) -> dict:
    """Time the case's candidates in alternating blocks; per candidate the median, GFLOP/s, share of peak."""
    result = {"name": case.name, "dtype": case.dtype, "shape": case.shape, "notes": case.notes, "candidates": {}}
    if not case.candidates:
        result["comparisons"] = []
        return result
    times = alternate(case.candidates, rounds, runs, pause)
    for name, per_round in times.items():
        seconds = float(np.median(per_round))
        gflops = case.flops[name] / seconds / 1e9
        result["candidates"][name] = {
            "seconds_per_round": per_round,
            "median_seconds": seconds,
            "gflops": gflops,
            "fraction_of_matmul_peak": gflops / peaks[case.dtype],
        }
    result["comparisons"] = []
    for comparison in case.comparisons:
        ratio, per_round = median_ratio(times[comparison.numerator], times[comparison.denominator])
        target = comparison.target
        result["comparisons"].append({
            "numerator": comparison.numerator,
            "denominator": comparison.denominator,
            "median_ratio": ratio,
            "ratio_per_round": per_round,
            "target": target,
            "met": None if target is None else ratio <= target,
        })
    return result


def print_case(result: dict) -> None:
    print(f"\n{result['name']}  ({result['shape']})")
    for name, row in result["candidates"].items():
        print(
            f"  {name:32s} {row['median_seconds'] * 1e3:9.1f} ms {row['gflops']:7.1f} GFLOP/s "
            f"{100 * row['fraction_of_matmul_peak']:5.1f}% of peak"
        )
    for row in result["comparisons"]:
        target = ""
        if row["target"] is not None:
            target = f"   target <= {row['target']:.2f}: {'met' if row['met'] else 'NOT met'}"
        print(f"  ratio {row['numerator']} / {row['denominator']}: {row['median_ratio']:.2f}{target}")
    for note in result["notes"]:
        print(f"  note: {note}")


def markdown_table(results: list[dict], machine: dict) -> str:
    """The results as a Markdown table: one row per candidate, then the ratios and their targets."""
    lines = [
        f"numpy {machine['numpy']}, {machine['blas'].get('library', 'BLAS')} ({machine['blas'].get('kernel', '?')}), "
        f"torch {machine['torch']}, {machine['blas']['threads']} threads each; NumPy matmul peak "
        + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in machine["matmul_peak_gflops"].items())
        + f"; load average {machine['load_average_before']} before, {machine['load_average_after']} after; "
        f"{machine['rounds']} rounds, best of {machine['runs']}."
        + (f" BLAS: {note}." if (note := blas_note(machine["blas"])) else ""),
        "",
        "| case | candidate | ms (median) | GFLOP/s | % of peak |",
        "|---|---|---:|---:|---:|",
    ]
    for case in results:
        for name, row in case["candidates"].items():
            lines.append(
                f"| {case['name']} ({case['shape']}) | {name} | {row['median_seconds'] * 1e3:.1f} "
                f"| {row['gflops']:.0f} | {100 * row['fraction_of_matmul_peak']:.0f} |"
            )
    lines += ["", "| case | time ratio (median of per-round ratios) | value | target | met |"]
    lines.append("|---|---|---:|---:|---|")
    for case in results:
        for row in case["comparisons"]:
            target = "" if row["target"] is None else f"<= {row['target']:.2f}"
            met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
            ratio = f"{row['numerator']} / {row['denominator']}"
            lines.append(f"| {case['name']} | {ratio} | {row['median_ratio']:.2f} | {target} | {met} |")
    notes = [f"{case['name']}: {note}" for case in results for note in case["notes"]]
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else [])) + "\n"


def plot_ratios(results: list[dict], path: str, machine: dict) -> str | None:
    """Horizontal bars of the median ratios, each with its target; None when matplotlib is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [(case["name"], c) for case in results for c in case["comparisons"]]
    if not rows:
        return None
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(9, 0.62 * len(rows) + 2.0))
    labels = [f"{name}\n{c['numerator']} / {c['denominator']}" for name, c in rows]
    ratios = [c["median_ratio"] for _, c in rows]
    colors = ["tab:gray" if c["met"] is None else ("tab:green" if c["met"] else "tab:red") for _, c in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, ratios, color=colors, height=0.7)
    right = max(max(ratios), *(c["target"] or 0.0 for _, c in rows))
    for yi, (_, c) in zip(y, rows):
        if c["target"] is not None:
            ax.plot([c["target"]] * 2, [yi - 0.42, yi + 0.42], color="black", linewidth=2)
        # The values in a column of their own, right of every bar, tick and the equal-time line.
        ax.text(1.06 * right, yi, f"{c['median_ratio']:.2f}", va="center", fontsize=9)
    ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1.16 * right)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("time ratio, median of the per-round ratios (< 1: the numerator is faster)")
    ax.legend(handles=[Patch(color="tab:green", label="target met"), Patch(color="tab:red", label="target not met"),
                       Patch(color="tab:gray", label="no target"),
                       plt.Line2D([], [], color="black", linewidth=2, label="target"),
                       plt.Line2D([], [], color="black", linestyle=":", linewidth=1, label="equal time")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=8, frameon=False)
    load = machine.get("load_average_before")
    fig.suptitle(
        f"numpy_attention vs PyTorch CPU, {machine['blas']['threads']} threads each; "
        f"numpy {machine['numpy']} (BLAS kernel {machine['blas'].get('kernel', '?')}), torch {machine['torch']}, "
        f"load average {load[0] if load else '?'} at start",
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    runs = args.runs or (1 if args.quick else 3)
    pause = args.pause if args.pause is not None else (0.0 if args.quick else 0.5)

    blas = blas_info()
    torch = import_torch(blas["threads"], args.no_torch)
    peak_size = 256 if args.quick else 2048
    peaks = {dtype: matmul_peak(np.dtype(dtype), peak_size) for dtype in ("float32", "float64")}
    machine = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "blas": blas,
        "matmul_peak_gflops": peaks,
        "matmul_peak_size": peak_size,
        "load_average_before": load_average(),
        "rounds": rounds,
        "runs": runs,
        "pause": pause,
    }
    print(f"numpy {np.__version__}, BLAS {blas.get('library', '?')} kernel {blas.get('kernel', '?')}, "
          f"{blas['threads']} threads ({blas['source']})")
    note = blas_note(blas)
    if note:
        print(f"BLAS: {note}")
    print("torch: not used (not installed, or --no-torch): NumPy-only figures" if torch is None
          else f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"NumPy matmul peak ({peak_size}^3): " + ", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in peaks.items()))
    print(f"load average: {machine['load_average_before']}; {rounds} rounds x best of {runs}, pause {pause}s")

    results = []
    start = time.perf_counter()
    for case in build_cases(torch, args.quick):
        if args.cases and not any(word in case.name for word in args.cases):
            continue
        result = run_case(case, rounds, runs, pause, peaks)
        print_case(result)
        results.append(result)
    machine["load_average_after"] = load_average()
    machine["seconds"] = time.perf_counter() - start
    print(f"\nload average after: {machine['load_average_after']}; {machine['seconds']:.0f} s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "cases": results}, f, indent=1)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown_table(results, machine))
        print(f"wrote {args.markdown}")
    if plot_ratios(results, args.plot, machine):
        print(f"wrote {args.plot}")
    else:
        print("no plot (matplotlib not installed, or no ratio to plot)")
    return 0


if __name__ == "__main__":
    rerun_with_detected_blas("benchmarks.run")
    sys.exit(main())

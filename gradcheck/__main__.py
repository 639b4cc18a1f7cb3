"""``python -m gradcheck``: verify every op and module of numpy_attention.

Each entry of :data:`gradcheck.suite.ENTRIES` is checked against central
finite differences and, when torch is installed, against torch autograd.
Prints one line per check, the full table of every failure, and a summary;
exits 1 if anything failed.

    python -m gradcheck [--fast] [--only PATTERN] [--dtype float64|float32] [--json PATH]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numpy_attention.optional import TORCH_HINT

from .check import FLOAT32_NOTE
from .reference import require_torch, torch_available
from .report import Report
from .suite import ENTRIES, Entry


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gradcheck", description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="random directional derivatives instead of every element")
    p.add_argument("--only", metavar="PATTERN", help="entries whose name contains PATTERN (or matches it as a glob)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="data dtype (default float64)")
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH")
    p.add_argument("--no-torch", action="store_true", help="skip the torch comparisons even if torch is installed")
    p.add_argument("--verbose", action="store_true", help="print the full table of every check, not only failures")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    return p.parse_args(argv)


def selected(entries: Sequence[Entry], pattern: str | None) -> list[Entry]:
    if pattern is None:
        return list(entries)
    return [e for e in entries if pattern in e.name or fnmatch.fnmatchcase(e.name, pattern)]


def run_entry(entry: Entry, dtype: np.dtype, fast: bool, use_torch: bool) -> dict[str, Any]:
    """Build the entry and run its checks; an exception is recorded as a failure, not raised."""
    start = time.perf_counter()
    reports: list[Report] = []
    error = skipped = None
    try:
        target = entry.build(dtype)
        if not target.skip_finite_differences:
            reports.append(target.check(fast))
        skipped = target.skip_finite_differences or None
        if use_torch and target.torch_forward is not None:
            reports.append(target.compare_with_torch())
    except Exception as err:  # noqa: BLE001 - one broken entry must not hide the others
        error = f"{type(err).__name__}: {err}"
    return {"name": entry.name, "reports": reports, "error": error, "skipped": skipped,
            "seconds": time.perf_counter() - start}


def _line(name: str, report: Report) -> str:
    worst = report.worst()
    kind = {"torch": "torch", "numeric": "finite differences"}.get(report.labels[1], report.labels[1])
    rel = f"{worst.max_rel_error:.1e} ({worst.name})" if worst is not None and worst.max_rel_error is not None else "-"
    status = "ok" if report.passed else "FAIL"
    return f"  {name:<44} {kind:<19} {len(report.rows):>7}  {rel:<22} {status}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    entries = selected(ENTRIES, args.only)
    if args.list:
        print("\n".join(entry.name for entry in entries))
        return 0
    if not entries:
        print(f"no entry matches {args.only!r}; python -m gradcheck --list shows them", file=sys.stderr)
        return 1
    use_torch = not args.no_torch and torch_available()
    dtype = np.dtype(args.dtype)
    mode = "fast (random directions)" if args.fast else "exhaustive (every element)"
    versus = f"torch {require_torch().__version__} autograd" if use_torch else (
        "torch skipped" if args.no_torch else f"torch not installed, so not compared ({TORCH_HINT})")
    print(f"gradcheck: {len(entries)} entries, {dtype}, finite differences {mode}; {versus}")
    if dtype == np.float32:
        print(f"note: {FLOAT32_NOTE}")
    print(f"  {'entry':<44} {'against':<19} {'tensors':>7}  {'worst rel err':<22} status")

    start = time.perf_counter()
    results = []
    for entry in entries:
        result = run_entry(entry, dtype, args.fast, use_torch)
        results.append(result)
        if result["skipped"]:
            print(f"  {entry.name:<44} {'finite differences':<19} skipped: {result['skipped']}")
        for report in result["reports"]:
            print(_line(entry.name, report))
        if result["error"]:
            print(f"  {entry.name:<44} ERROR: {result['error']}")
    elapsed = time.perf_counter() - start

    failures = [(r["name"], rep) for r in results for rep in r["reports"] if args.verbose or not rep.passed]
    for name, report in failures:
        print(f"\n[{name}]\n{report}")
    num_checks = sum(len(r["reports"]) for r in results)
    num_failed = sum(not rep.passed for r in results for rep in r["reports"]) + sum(bool(r["error"]) for r in results)
    if args.json:
        _write_json(args.json, results, dtype, args.fast, use_torch)
    verdict = "PASSED" if num_failed == 0 else f"FAILED: {num_failed} of {num_checks} checks"
    print(f"\n{verdict}: {len(entries)} entries, {num_checks} checks in {elapsed:.1f} s")
    return 0 if num_failed == 0 else 1


def _write_json(path: Path, results: list, dtype: np.dtype, fast: bool, use_torch: bool) -> None:
    data = {
        "dtype": str(dtype),
        "fast": fast,
        "torch": require_torch().__version__ if use_torch else None,
        "passed": all(not r["error"] and all(rep.passed for rep in r["reports"]) for r in results),
        "entries": [
            {"name": r["name"], "seconds": r["seconds"], "error": r["error"],
             "skipped_finite_differences": r["skipped"], "reports": [rep.to_dict() for rep in r["reports"]]}
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def run_from_command_line() -> int:
    """``main()``, quiet when the reader of stdout goes away (``python -m gradcheck --list | head -1``).

    Python's recipe for a closed pipe: point stdout at devnull so that the interpreter's
    final flush cannot fail again, and exit with status 1, as a SIGPIPE'd ``print`` would.
    """
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(run_from_command_line())

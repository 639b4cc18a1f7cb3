"""How the benchmarks time things: alternating blocks in one process, and the machine they ran on.

Both NumPy's BLAS and torch keep their worker threads spinning for a while
after each call; on a machine with few cores, timing one library right after
the other makes the second wait for the first one's threads. So each library
is timed in its own block: a short pause, a warm-up call, then the best of a
few runs. The blocks of all candidates alternate, and the whole round is
repeated; a ratio is taken within each round (the same machine state for
both), and the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np


def best_of(fn: Callable[[], object], runs: int) -> float:
    """One warm-up call, then the fastest of ``runs`` timed calls, in seconds."""
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def alternate(
    candidates: dict[str, Callable[[], object]], rounds: int, runs: int, pause: float
) -> dict[str, list[float]]:
    """Time every candidate in its own block, the blocks alternating, for ``rounds`` rounds.

    Returns the best time of each block, per candidate, in round order. The
    order of the blocks rotates from one round to the next, so that no
    candidate always follows the same one.
    """
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(pause)  # let the previous block's worker threads go idle
            times[name].append(best_of(candidates[name], runs))
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of the per-round ratio, and the per-round ratios."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return float(np.median(ratios)), ratios


def matmul_peak(dtype: np.dtype, size: int, runs: int = 5) -> float:
    """GFLOP/s of one large square NumPy matrix product: the yardstick for "fraction of peak"."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    out = np.empty_like(a)
    return 2 * size**3 / best_of(lambda: np.matmul(a, b, out=out), runs) / 1e9


def blas_info() -> dict:
    """NumPy's BLAS: library, thread count and the kernel (core type) it runs.

    threadpoolctl reads these from the loaded library; without it the thread
    count is the one OpenBLAS would choose (its environment variables, else
    the number of usable cores), marked as assumed.
    """
    info = {
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "unset": os.environ.get(UNSET_MARKER),  # the variables the benchmark started again without, if any
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        info.update(threads=int(threads) if threads else cores, source="assumed (threadpoolctl not installed)")
        return info
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    numpy_blas = [lib for lib in blas if "numpy" in lib.get("filepath", "")] or blas
    if not numpy_blas:
        info.update(threads=1, source="no BLAS found by threadpoolctl")
        return info
    lib = numpy_blas[0]
    info.update(
        threads=lib["num_threads"],
        library=f"{lib.get('internal_api')} {lib.get('version')}",
        kernel=lib.get("architecture"),
        source="threadpoolctl",
    )
    return info


# OpenBLAS's x86 kernels that use AVX-512, and the CPU flags they need (a DYNAMIC_ARCH build,
# as NumPy's wheels are, picks a kernel from the CPU when it loads, unless OPENBLAS_CORETYPE names one).
AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")
AVX512_FLAGS = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BLAS_AS_SET = "--blas-as-set"
# Set in the process started again without the OpenBLAS variables: what they were (for the
# record, and so that it never starts again a second time).
UNSET_MARKER = "BENCHMARKS_OPENBLAS_UNSET"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def avx512_unused(blas: dict) -> bool:
    """OpenBLAS runs a kernel without AVX-512 on a CPU that has it (float32 products at about half speed).

    False when the kernel is unknown (threadpoolctl, which reads it, is not installed).
    """
    library, kernel = blas.get("library") or "", (blas.get("kernel") or "").lower()
    return library.startswith("openblas") and kernel not in AVX512_KERNELS and AVX512_FLAGS <= cpu_flags()


def add_blas_argument(parser: argparse.ArgumentParser) -> None:
    """The option that keeps the OpenBLAS variables of the environment (see :func:`rerun_with_detected_blas`)."""
    parser.add_argument(BLAS_AS_SET, action="store_true",
                        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE even when they hold OpenBLAS to a kernel "
                             "without the CPU's AVX-512")


def rerun_with_detected_blas(module: str) -> None:
    """Start ``python -m module`` again without the OpenBLAS variables when they cost NumPy the CPU's AVX-512.

    Each library runs on the kernel it picks for the CPU: torch's MKL is held by no variable,
    and NumPy's OpenBLAS should not be either (benchmarks/README.md, "Machine"). An environment
    may set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) to an older kernel; OpenBLAS reads them
    when it loads, so the command starts again without them, says so, and records what they
    were in ``BENCHMARKS_OPENBLAS_UNSET`` (which :func:`blas_info` reports). Only from a
    command's ``__main__`` (the process is replaced); not with ``--blas-as-set`` (or a prefix
    of it, as argparse takes), and never twice.
    """
    blas = blas_info()
    keep = any(len(arg) > 2 and BLAS_AS_SET.startswith(arg) for arg in sys.argv[1:])
    if keep or os.environ.get(UNSET_MARKER) or not blas["OPENBLAS_CORETYPE"] or not avx512_unused(blas):
        return
    was = " ".join(f"{name}={blas[name]}" for name in OPENBLAS_VARIABLES if blas[name])
    print(f"{was}: OpenBLAS is held to its {blas.get('kernel')} kernel, without this CPU's AVX-512; running again "
          f"without {' and '.join(OPENBLAS_VARIABLES)} ({BLAS_AS_SET} keeps them)", flush=True)
    environment = {name: value for name, value in os.environ.items() if name not in OPENBLAS_VARIABLES}
    environment[UNSET_MARKER] = was
    # The command as it was started (interpreter options included); Python 3.9 has no orig_argv.
    argv = getattr(sys, "orig_argv", None) or [sys.executable, "-m", module, *sys.argv[1:]]
    os.execve(sys.executable, [sys.executable, *argv[1:]], environment)


def blas_note(blas: dict) -> str | None:
    """What to print beside the BLAS kernel: the OpenBLAS variables set or unset, a kernel without the CPU's AVX-512."""
    notes = [f"{name}={blas[name]}" for name in OPENBLAS_VARIABLES if blas[name]]
    if blas.get("unset"):
        notes.append(f"run without the environment's {blas['unset']}")
    if avx512_unused(blas):
        notes.append(f"the {blas.get('kernel')} kernel leaves the CPU's AVX-512 unused")
    return "; ".join(notes) or None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other processes compete for the cores)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None

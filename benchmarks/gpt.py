"""A GPT training step (forward + backward) against nanoGPT's torch twin with the same weights and threads.

    python -m benchmarks.gpt [--quick] [--rounds N] [--threads N] [--profile]

The case of issue 15: float32, 4 layers, width 256, 8 heads, batch 8, T 256
(vocabulary 65, nanoGPT's shakespeare_char). The torch side is the twin of
tests/helpers/gpt_twin.py on nanoGPT's fast path (``scaled_dot_product_attention``,
``is_causal=True``), loaded with the numpy model's weights; both losses are
compared before anything is timed. Timing alternates blocks as benchmarks.timing
does; the machine's load average is printed, since other processes share the
cores. ``--profile`` prints where the numpy step spends its time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

import numpy as np

from numpy_attention.models import GPT

from .timing import (
    add_blas_argument,
    alternate,
    blas_info,
    blas_note,
    load_average,
    median_ratio,
    rerun_with_detected_blas,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # for helpers.gpt_twin


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, one round: checks the harness runs")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternating blocks")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per block, the best counts")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds of pause before each block")
    parser.add_argument("--threads", type=int, default=None, help="threads for both (default: NumPy's BLAS count)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of one numpy step")
    add_blas_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from helpers.gpt_twin import load_ours_into, make_twin

    config = dict(vocab_size=65, block_size=256, n_layer=4, n_head=8, n_embd=256)
    batch, length = 8, 256
    if args.quick:
        config, batch, length, args.rounds, args.runs, args.pause = (
            dict(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8), 2, 16, 1, 1, 0.0)
    blas = blas_info()
    threads = args.threads or blas["threads"]
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads, user_api="blas")
    torch.set_num_threads(threads)
    model = GPT(**config, dtype=np.float32, rng=np.random.default_rng(0))
    twin = make_twin(torch, **config, dtype=torch.float32, sdpa=True)
    load_ours_into(torch, twin, model)
    rng = np.random.default_rng(1)
    idx, targets = (rng.integers(0, config["vocab_size"], (batch, length)) for _ in range(2))
    idx_t, targets_t = torch.tensor(idx), torch.tensor(targets)

    def ours() -> float:
        model.zero_grad()
        _, loss = model.forward(idx, targets)
        model.backward()
        return float(loss)

    def theirs() -> float:
        twin.zero_grad(set_to_none=False)
        _, loss = twin(idx_t, targets_t)
        loss.backward()
        return loss.item()

    loss, ref_loss = ours(), theirs()
    print(f"GPT training step, float32, {config}, batch {batch}, T {length}, {threads} thread(s)")
    print(f"numpy {np.__version__}, BLAS {blas.get('library', '?')} kernel {blas.get('kernel', '?')}; "
          f"torch {torch.__version__}" + (f"; BLAS: {note}" if (note := blas_note(blas)) else ""))
    print(f"loss: numpy {loss:.6f}  torch {ref_loss:.6f}  (relative difference {abs(loss - ref_loss) / ref_loss:.1e})")
    if abs(loss - ref_loss) > 1e-4 * abs(ref_loss):
        print("the two models disagree: nothing is timed")
        return 1
    print(f"load average before: {load_average()}")
    times = alternate({"numpy_attention": ours, "torch": theirs}, args.rounds, args.runs, args.pause)
    ratio, per_round = median_ratio(times["numpy_attention"], times["torch"])
    print(f"numpy_attention: {np.median(times['numpy_attention']) * 1e3:.1f} ms per step "
          f"(rounds: {', '.join(f'{t * 1e3:.0f}' for t in times['numpy_attention'])})")
    print(f"torch:           {np.median(times['torch']) * 1e3:.1f} ms per step "
          f"(rounds: {', '.join(f'{t * 1e3:.0f}' for t in times['torch'])})")
    print(f"ratio numpy / torch: {ratio:.2f}x (per round: {', '.join(f'{r:.2f}' for r in per_round)}); "
          f"target <= 1.0x: {'met' if ratio <= 1.0 else 'not met'}")
    print(f"load average after: {load_average()}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(ours)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    rerun_with_detected_blas("benchmarks.gpt")
    raise SystemExit(main())

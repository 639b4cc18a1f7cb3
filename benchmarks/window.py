"""A causal sliding window against full causal attention in the kernels: ``python -m benchmarks.window``.

Forward + backward, float32, B = 1, L = T = 4096, E = 64 (``--heads``, default 4):
full causal against Mistral's causal sliding window ``window=(255, 0)`` (each
query sees its 256 last keys), in the flash kernel and the dense one. Both skip
the keys outside each row tile's band, so the window's time must fall well
below the causal one's (the dense kernel still writes its full L x T weights).
The candidates alternate in blocks (see :mod:`benchmarks.timing`); the table
gives each one's median time and the median per-round ratio window / causal.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from numpy_attention import kernels

from .steps import fwd_bwd, inputs
from .timing import alternate, median_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--window", type=int, default=255, help="left side of the window (right side 0)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    q, k, v, dout = inputs((1, args.heads, args.length, 64), np.float32)
    pairs = {"flash": (kernels.flash_attention_forward, kernels.flash_attention_backward),
             "dense": (kernels.attention_forward, kernels.attention_backward)}
    window = f"window ({args.window}, 0)"
    candidates = {}
    for kernel, pair in pairs.items():
        candidates[f"{kernel} causal"] = fwd_bwd(*pair, q, k, v, dout, is_causal=True)
        candidates[f"{kernel} {window}"] = fwd_bwd(*pair, q, k, v, dout, is_causal=True, window=(args.window, 0))
    times = alternate(candidates, rounds=args.rounds, runs=args.runs, pause=0.0)
    print(f"kernels fwd+bwd, float32, B=1, H={args.heads}, L=T={args.length}, E=64; load {os.getloadavg()}")
    for name, values in times.items():
        print(f"  {name:24s} median {np.median(values):.3f} s")
    for kernel in pairs:
        ratio, ratios = median_ratio(times[f"{kernel} {window}"], times[f"{kernel} causal"])
        print(f"  {kernel}: window / causal  {ratio:.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()

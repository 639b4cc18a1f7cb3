"""Every pair of MultiHeadAttention's options, in 17 entries: a covering array of strength 2.

The 11 options below have 4 * 3^5 * 2^5 = 31104 combinations; each pair of values of
any two options (all 378 pairs allowed: a boolean and a float mask do not mix, as
in torch) occurs in at least one row of :data:`PAIRS`. The rows were found by a
greedy search and are written out, so that each entry reads as its configuration;
``covered_pairs()`` is what a test checks. Each entry compares the output and every
gradient with torch (and the returned weights, when asked for), and runs finite
differences along random directions.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..report import Report
from ..targets import Entry, Target, mha_target
from .common import as_tier
from .weights import mha_weights_check

OPTIONS: dict[str, tuple] = {
    "impl": ("dense", "flash", "textbook", "textbook-flash"),
    "inputs": ("self", "cross", "kdim-vdim"),
    "attn_mask": (None, "bool", "float"),
    "key_padding_mask": (None, "bool", "float"),
    "layout": ("batch-first", "seq-first", "unbatched"),
    "weights": ("none", "averaged", "per-head"),
    "is_causal": (False, True),
    "add_bias_kv": (False, True),
    "add_zero_attn": (False, True),
    "num_kv_heads": (4, 2),
    "dropout": (0.0, 0.2),
}
PAIRS: list[tuple] = [
    # impl           inputs       attn_mask key_padding layout       weights     causal bias_kv zero_attn kv dropout
    ("textbook-flash", "self",      "float", "float",    "seq-first",   "averaged", True,  True,  True,  4, 0.0),
    ("textbook",       "cross",     None,    "bool",     "unbatched",   "per-head", False, False, False, 4, 0.2),
    ("dense",          "kdim-vdim", "bool",  None,       "batch-first", "none",     False, False, True,  2, 0.0),
    ("flash",          "kdim-vdim", "float", "float",    "batch-first", "per-head", True,  True,  False, 2, 0.2),
    ("flash",          "self",      None,    "bool",     "unbatched",   "none",     True,  True,  True,  2, 0.0),
    ("dense",          "cross",     "bool",  None,       "seq-first",   "averaged", True,  False, False, 2, 0.2),
    ("textbook",       "self",      "bool",  None,       "seq-first",   "per-head", False, True,  True,  4, 0.0),
    ("textbook-flash", "cross",     "float", "float",    "unbatched",   "none",     False, False, True,  4, 0.2),
    ("textbook-flash", "kdim-vdim", None,    "bool",     "batch-first", "averaged", False, True,  False, 4, 0.0),
    ("flash",          "self",      None,    None,       "seq-first",   "none",     False, False, False, 2, 0.2),
    ("dense",          "cross",     None,    "float",    "unbatched",   "per-head", True,  True,  True,  4, 0.0),
    ("textbook",       "kdim-vdim", "float", None,       "unbatched",   "averaged", True,  True,  False, 2, 0.0),
    ("flash",          "cross",     "bool",  "bool",     "seq-first",   "averaged", True,  True,  False, 4, 0.0),
    ("textbook-flash", "cross",     "bool",  None,       "unbatched",   "per-head", True,  True,  True,  2, 0.0),
    ("textbook",       "cross",     "float", "float",    "batch-first", "none",     True,  False, True,  4, 0.2),
    ("dense",          "self",      "float", None,       "batch-first", "none",     True,  False, False, 2, 0.2),
    ("dense",          "kdim-vdim", None,    "bool",     "seq-first",   "averaged", False, True,  True,  4, 0.2),
]


def allowed(row: dict) -> bool:
    """A boolean and a float mask do not mix (a TypeError here, deprecated in torch)."""
    return not (row["attn_mask"] and row["key_padding_mask"] and row["attn_mask"] != row["key_padding_mask"])


def covered_pairs() -> tuple[set, set]:
    """(every allowed pair of option values, the pairs the rows of PAIRS cover)."""
    names = list(OPTIONS)
    wanted, covered = set(), set()
    for first, second in itertools.combinations(names, 2):
        for a, b in itertools.product(OPTIONS[first], OPTIONS[second]):
            if allowed({**dict.fromkeys(names), first: a, second: b}):
                wanted.add((first, a, second, b))
    for values in PAIRS:
        row = dict(zip(names, values))
        covered |= {(first, row[first], second, row[second]) for first, second in itertools.combinations(names, 2)}
    return wanted, covered


def pair_name(row: dict) -> str:
    parts = [row["impl"], row["inputs"], row["layout"], f"weights-{row['weights']}"]
    parts += [f"{name.replace('_', '-')}-{row[name]}" for name in ("attn_mask", "key_padding_mask") if row[name]]
    parts += [name.replace("_", "-") for name in ("is_causal", "add_bias_kv", "add_zero_attn") if row[name]]
    parts += [f"kv-heads-{row['num_kv_heads']}"] + ([f"dropout-{row['dropout']}"] if row["dropout"] else [])
    return "/".join(["MultiHeadAttention-pairs", "-".join(parts[:2]), "-".join(parts[2:])])


def pair_target(dtype: np.dtype, row: dict) -> Target:
    """The row's module: embed_dim 8, 4 heads; 4 queries; 5 keys for cross-attention (kdim 5, vdim 6)."""
    keys = None if row["inputs"] == "self" else 5
    dims = {"kdim": 5, "vdim": 6} if row["inputs"] == "kdim-vdim" else {}
    target = mha_target(
        dtype, batch=None if row["layout"] == "unbatched" else 2, queries=4, keys=keys, num_heads=4,
        num_kv_heads=row["num_kv_heads"], batch_first=row["layout"] != "seq-first", impl=row["impl"],
        attn_mask=row["attn_mask"], key_padding_mask=row["key_padding_mask"], is_causal=row["is_causal"],
        add_bias_kv=row["add_bias_kv"], add_zero_attn=row["add_zero_attn"], need_weights=row["weights"] != "none",
        average_attn_weights=row["weights"] != "per-head", dropout=row["dropout"], training=bool(row["dropout"]),
        fast=True, **dims,
    )
    if row["weights"] == "none" or target.torch_forward is None:
        return target

    def with_weights() -> Report:  # the output and gradients, then the returned weights, in one report
        report = Target.compare_with_torch(target)
        report.rows += mha_weights_check(target, row["weights"] == "averaged").rows
        return report

    return as_tier(target, own_torch=with_weights)


def pair_entry(values: tuple) -> Entry:
    row = dict(zip(OPTIONS, values))
    return Entry(pair_name(row), lambda dt: pair_target(dt, row))


ENTRIES: list[Entry] = [pair_entry(values) for values in PAIRS]

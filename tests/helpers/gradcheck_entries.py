"""Running entries of ``python -m gradcheck`` from a test: which of them fail."""

from __future__ import annotations

import numpy as np

import gradcheck.__main__ as cli


def failing(entries, *, use_torch: bool = True) -> list[str]:
    """The names of the entries that fail (a failed check or an error), exhaustive finite differences."""
    names = []
    for entry in entries:
        result = cli.run_entry(entry, np.dtype(np.float64), False, use_torch)
        if result["error"] or not all(report.passed for report in result["reports"]):
            names.append(entry.name)
    return names

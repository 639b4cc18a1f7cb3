"""The result of a check: one row per tensor, an aligned table, and plain data.

The error measure, the same for every check:

* an element passes when ``|actual - expected| <= atol + rtol * |expected|``
  (``actual`` is the analytic gradient, ``expected`` the finite-difference or
  torch value; NumPy's ``allclose`` rule). A tensor passes when every element
  does; the report passes when every tensor does.
* ``max_abs_error`` is ``max |actual - expected|``.
* ``max_rel_error`` is scale-aware: ``max |actual - expected|`` divided by the
  largest magnitude in either array, so a tiny element cannot blow it up. The
  divisor is at least ``atol / rtol``, the magnitude below which the absolute
  tolerance rules: a gradient that is zero up to rounding (both sides ~1e-16)
  then shows a tiny relative error instead of a meaningless 0.5.
* ``worst_index`` is the element furthest outside the tolerance, the largest
  ``|actual - expected| / (atol + rtol * |expected|)``; ``actual`` and
  ``expected`` are the two values there. That is where to look for the bug.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

OUTPUT_ROW = "output"  # the row of a reference comparison that compares the forward's outputs
REL_ERR_NOTE = "max rel err = max |{0} - {1}| / the largest |value| in the tensor (either side), not per element"


@dataclass(frozen=True)
class Row:
    """One checked (or skipped) tensor."""

    name: str
    shape: tuple
    status: str  # "ok", "FAIL" or "skipped"
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    worst_index: tuple | None = None
    actual: float | None = None
    expected: float | None = None
    num_failed: int = 0
    num_checked: int = 0
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"


def compare(
    name: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float, *, note: str = ""
) -> Row:
    """Compare two arrays of the same shape element by element (see the module docstring)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: cannot compare shapes {actual.shape} and {expected.shape}")
    if actual.size == 0:
        return Row(name, actual.shape, "ok", 0.0, 0.0, note=note or "empty")
    with np.errstate(invalid="ignore"):
        error = np.abs(actual - expected)
        error = np.where(np.isnan(error), np.inf, error)  # a NaN on either side is never a match
        outside = error / (atol + rtol * np.abs(expected))
    failed = int(np.count_nonzero(~(outside <= 1.0)))
    worst = np.unravel_index(int(np.argmax(np.nan_to_num(outside, nan=np.inf))), actual.shape)
    floor = atol / rtol if rtol > 0 else atol
    scale = max(float(np.nanmax(np.abs(actual), initial=0.0)), float(np.nanmax(np.abs(expected), initial=0.0)), floor)
    max_error = float(error.max())
    return Row(
        name=name,
        shape=actual.shape,
        status="FAIL" if failed else "ok",
        max_abs_error=max_error,
        max_rel_error=max_error / scale if scale > 0 else (0.0 if max_error == 0 else np.inf),
        worst_index=tuple(int(i) for i in worst),
        actual=float(actual[worst]),
        expected=float(expected[worst]),
        num_failed=failed,
        num_checked=actual.size,
        note=note,
    )


def skipped(name: str, shape: tuple, reason: str) -> Row:
    return Row(name, tuple(shape), "skipped", note=reason)


def failed(name: str, shape: tuple, reason: str) -> Row:
    """A tensor that could not be compared at all (a wrong dtype, say): a failure with a reason."""
    return Row(name, tuple(shape), "FAIL", num_failed=1, note=reason)


@dataclass
class Report:
    """Rows of one check. ``passed`` is True when no row failed.

    ``labels`` name the two sides of every row: ("analytic", "numeric") for
    finite differences, ("numpy", "torch") for a torch comparison.
    """

    title: str
    rows: list[Row]
    method: str
    dtype: str
    atol: float
    rtol: float
    eps: float | None = None
    labels: tuple[str, str] = ("analytic", "numeric")
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.passed]

    def worst(self) -> Row | None:
        """The failing row to look at first: the ``output`` row when the forward differs (the gradient
        rows then compare gradients of different functions), else the failing row with the most
        elements out of tolerance; when nothing fails, the row of largest relative error."""
        if self.failures:
            outputs = [row for row in self.failures if row.name == OUTPUT_ROW]
            return outputs[0] if outputs else max(self.failures, key=lambda row: (row.num_failed,
                                                                                   row.max_rel_error or 0.0))
        checked = [row for row in self.rows if row.max_rel_error is not None]
        return max(checked, key=lambda row: row.max_rel_error) if checked else None

    def summary(self) -> str:
        """One line: PASSED, or FAILED naming the worst tensor, where, and the two values there."""
        if self.passed:
            checked = sum(row.status == "ok" for row in self.rows)
            agree = "tensor agrees" if checked == 1 else "tensors agree"
            return f"PASSED: {checked} {agree} ({self.method})"
        row = self.worst()
        where = f" at {row.worst_index}" if row.worst_index is not None else ""
        values = (
            f": {self.labels[0]} {row.actual:.8g} vs {self.labels[1]} {row.expected:.8g}"
            if row.actual is not None else f": {row.note}"
        )
        names = ", ".join(repr(r.name) for r in self.failures)
        forward = " (the forward differs: fix it first)" if row.name == OUTPUT_ROW else ""
        return f"FAILED ({names}): {row.name!r} is off{where}{values}{forward}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): the settings, ``passed`` and one dict per row."""
        rows = []
        for row in self.rows:
            data = asdict(row)
            data["shape"] = list(row.shape)
            data["worst_index"] = None if row.worst_index is None else list(row.worst_index)
            data["passed"] = row.passed
            rows.append({key: _plain(value) for key, value in data.items()})
        return {
            "title": self.title,
            "passed": self.passed,
            "method": self.method,
            "dtype": self.dtype,
            "eps": self.eps,
            "atol": self.atol,
            "rtol": self.rtol,
            "labels": list(self.labels),
            "notes": list(self.notes),
            "rows": rows,
        }

    def __str__(self) -> str:
        actual_label, expected_label = self.labels
        header = ["tensor", "shape", "max abs err", "max rel err", "worst index", *self.labels, "status"]
        table = [header] + [_cells(row) for row in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        rule = f"|{actual_label} - {expected_label}| <= {self.atol:g} + {self.rtol:g} * |{expected_label}|"
        settings = f"{self.dtype}, {self.method}" + (f", eps={self.eps:g}" if self.eps is not None else "")
        lines = [f"{self.title}  ({settings}; pass: {rule})"]
        lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
        lines += [f"  note: {note}" for note in [REL_ERR_NOTE.format(*self.labels), *self.notes]]
        lines += [f"  {row.name}: {row.note}" for row in self.rows if row.note and row.status != "ok"]
        lines.append(self.summary())
        return "\n".join(lines)


def _cells(row: Row) -> list[str]:
    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    index = "-" if row.worst_index is None else str(row.worst_index)
    if row.status == "FAIL" and row.num_checked:
        status = f"FAIL ({row.num_failed}/{row.num_checked})"
    else:
        status = row.status
    return [
        row.name, str(row.shape), number(row.max_abs_error, ".2e"), number(row.max_rel_error, ".2e"),
        index, number(row.actual, ".8g"), number(row.expected, ".8g"), status,
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value

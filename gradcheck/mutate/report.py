"""The result of a mutation run: a table of mutants, a score, the diff of every survivor, JSON.

The score is the share of mutants the check rejects, among those that count:
``(killed + timeout) / (killed + timeout + survived)``. Mutants marked equivalent (they
compute the same function, so no check could reject them) and mutants whose module fails
to import (nothing is learnt about the check) are listed but not counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .operators import Mutant

STATUSES = ("killed", "timeout", "survived", "equivalent", "error")


@dataclass(frozen=True)
class MutantResult:
    """A mutant and what the check made of it (``reason``: why it is equivalent)."""

    mutant: Mutant
    status: str
    seconds: float = 0.0
    reason: str = ""
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        m = self.mutant
        data = {"id": m.id, "kind": m.kind, "function": m.function, "line": m.line, "description": m.description,
                "status": self.status, "seconds": round(self.seconds, 3), "diff": m.diff()}
        if self.reason:
            data["reason"] = self.reason
        if self.status in ("error", "timeout"):
            data["output"] = self.output
        return data


def load_equivalents(source: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """``{id: reason}`` from a mapping, or a JSON / TOML file holding a list of ``{id, reason}``.

    JSON: ``[{"id": "3f2a9c1b0d", "reason": "the shift cancels in the softmax"}]``;
    TOML (Python 3.11+): ``[[equivalent]]`` tables with ``id`` and ``reason``.
    """
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"equivalents: cannot read {path}: {err}") from err
    try:
        if path.suffix == ".toml":
            import tomllib  # Python 3.11+

            entries = tomllib.loads(text).get("equivalent", [])
        else:
            entries = json.loads(text)
    except (ValueError, ImportError) as err:
        raise ValueError(f"equivalents: {path} is not a valid {path.suffix[1:] or 'JSON'} list: {err}") from err
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise ValueError(f"equivalents: {path} must hold a list of {{id, reason}} entries; got {entries!r:.80}")
    return {str(e["id"]): str(e.get("reason", "")) for e in entries}


@dataclass
class MutationReport:
    """All mutants of one target under one check."""

    target: str
    file: str
    check: str
    results: list[MutantResult]
    baseline_seconds: float = 0.0
    seconds: float = 0.0
    unknown_equivalents: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    @property
    def score(self) -> float:
        """Percentage of counted mutants the check rejects (100 when none count)."""
        c = self.counts()
        counted = c["killed"] + c["timeout"] + c["survived"]
        return 100.0 if counted == 0 else 100.0 * (c["killed"] + c["timeout"]) / counted

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "survived"]

    def table(self) -> str:
        header = ("id", "status", "kind", "function", "line", "change")
        rows = [(r.mutant.id, r.status, r.mutant.kind, r.mutant.function, str(r.mutant.line),
                 _short(r.mutant.description) + (f"  [{r.reason}]" if r.reason else "")) for r in self.results]
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header[:-1])]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths)) + "  " + header[-1]]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
        return "\n".join(lines)

    def summary(self) -> str:
        c = self.counts()
        return (f"score {self.score:.1f} %: {c['killed']} killed, {c['timeout']} killed by timeout, "
                f"{c['survived']} survived; not counted: {c['equivalent']} equivalent, {c['error']} import errors "
                f"({len(self.results)} mutants, {self.seconds:.1f} s)")

    def __str__(self) -> str:
        parts = [f"mutants of {self.target} ({self.file}), check: {self.check}", "", self.table(), ""]
        for r in self.survivors:
            parts += [f"survived {r.mutant.id} ({r.mutant.kind}, {r.mutant.function}, line {r.mutant.line}):",
                      r.mutant.diff().rstrip("\n"), ""]
        if self.unknown_equivalents:
            parts += [f"note: {len(self.unknown_equivalents)} equivalence marks name no mutant of this run (another "
                      f"target's, or stale after an edit): {', '.join(self.unknown_equivalents)}", ""]
        parts.append(self.summary())
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "file": self.file, "check": self.check, "score": self.score,
                "counts": self.counts(), "baseline_seconds": round(self.baseline_seconds, 3),
                "seconds": round(self.seconds, 3), "unknown_equivalents": self.unknown_equivalents,
                "mutants": [r.to_dict() for r in self.results]}


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."

"""Mutation testing: how strong is your check?

A gradient check that passes says little until you know what it would have caught.
This harness plants one small bug at a time in your code (a sign, a dropped term, a
missing transpose, an axis, a comparison...; see :mod:`gradcheck.mutate.operators`),
runs your check on each mutant in a fresh process, and reports the mutants it let
through, with their diffs::

    import gradcheck.mutate
    report = gradcheck.mutate.run("mypkg.layers", "python -m pytest -x -q tests/test_layers.py")
    report = gradcheck.mutate.run([my_forward, my_backward], my_check)  # my_check() -> bool or Report
    print(report); report.score

    python -m gradcheck.mutate numpy_attention.functional.softmax --check "python -m gradcheck --fast"

The files on disk are never written: each child process imports the mutated module
through an import hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .operators import KINDS, Mutant, generate_mutants
from .report import MutantResult, MutationReport, load_equivalents
from .runner import Check, MutationError, Outcome, Runner, Target, describe_check, resolve_target

__all__ = ["KINDS", "Mutant", "MutantResult", "MutationError", "MutationReport", "generate_mutants", "load_equivalents",
           "mutants", "run"]


def mutants(
    target: Any,
    *,
    functions: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    include_guards: bool = False,
    ids: Sequence[str] | None = None,
) -> list[Mutant]:
    """The mutants of ``target`` (a module, module name, ``.py`` path, function or list of functions)."""
    resolved = resolve_target(target, functions)
    return _mutants(resolved, kinds, include_guards, ids)


def _display_path(file: Path) -> str:
    try:
        return str(file.relative_to(Path.cwd()))
    except ValueError:
        return str(file)


def _mutants(target: Target, kinds: Sequence[str] | None, include_guards: bool,
             ids: Sequence[str] | None) -> list[Mutant]:
    found = generate_mutants(target.source, filename=_display_path(target.file), module=target.module,
                             functions=target.functions, kinds=kinds, include_guards=include_guards)
    if ids is None:
        return found
    missing = sorted(set(ids) - {m.id for m in found})
    if missing:
        raise ValueError(f"ids: {missing} are not mutants of {target.module} (with these functions and kinds)")
    return [m for m in found if m.id in set(ids)]


def run(
    target: Any,
    check: Check,
    *,
    functions: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    equivalents: str | Path | Mapping[str, str] | None = None,
    timeout: float | None = None,
    jobs: int = 1,
    include_guards: bool = False,
    ids: Sequence[str] | None = None,
    cwd: str | Path | None = None,
    progress: Callable[[Mutant, MutantResult], None] | None = None,
) -> MutationReport:
    """Run ``check`` on every mutant of ``target`` and report which it rejects.

    Parameters
    ----------
    target : module, module name (``"numpy_attention.functional.softmax"``), path to a ``.py``
        file, a function, or a list of functions of one module (only those are mutated).
    check : a shell command (string or argv list; exit 0 = pass; a leading ``python`` is this
        interpreter), or a module-level callable taking no argument that returns a true value
        or an object with a true ``passed`` (a :class:`gradcheck.Report`) when the check passes.
    functions : names of the functions (or ``Class.method``) to mutate; default all.
    kinds : a subset of :data:`KINDS`; default all.
    equivalents : ``{id: reason}`` or a JSON/TOML file of ``{id, reason}``: mutants known to
        compute the same function. They are not run and not counted in the score.
    timeout : seconds per mutant (default: 4x the check's time on the original + 10 s); a
        mutant that runs longer is killed and counted as rejected ("timeout").
    jobs : mutants run at the same time.
    include_guards : also mutate input-validation guards (an ``if`` whose body ends in a raise).
    ids : run only the mutants with these ids (to look again at some survivors).
    cwd : the directory the check runs in (default: the current one).
    progress : called with each mutant and its result as it finishes.

    Raises
    ------
    MutationError
        If the target or check is unusable, or the check fails on the unmutated code.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer; got {jobs}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout}")
    resolved = resolve_target(target, functions)
    marks = load_equivalents(equivalents)
    generated = _mutants(resolved, kinds, include_guards, ids)
    start = time.perf_counter()
    runner = Runner(resolved, check, Path(cwd) if cwd is not None else Path.cwd())
    try:
        base = runner.baseline()
        limit = timeout if timeout is not None else 4 * base.seconds + 10
        settled = {m.id: MutantResult(m, "equivalent", reason=marks.get(m.id) or m.skip_reason or "")
                   for m in generated if m.id in marks or m.skip_reason}
        todo = [m for m in generated if m.id not in settled]

        def on_outcome(mutant: Mutant, outcome: Outcome) -> None:
            if progress is not None:
                progress(mutant, _result(mutant, outcome))
        outcomes = dict(zip((m.id for m in todo), runner.run_all(todo, limit, jobs, on_outcome)))
    finally:
        runner.close()
    results = [settled.get(m.id) or _result(m, outcomes[m.id]) for m in generated]
    known = {m.id for m in generated}
    check_name = f"{runner.callable['module']}.{runner.callable['qualname']}()" if runner.callable else \
        describe_check(check)
    return MutationReport(resolved.module, _display_path(resolved.file), check_name, results, base.seconds,
                          time.perf_counter() - start, sorted(set(marks) - known))


def _result(mutant: Mutant, outcome: Outcome) -> MutantResult:
    return MutantResult(mutant, outcome.status, outcome.seconds, output=outcome.output)

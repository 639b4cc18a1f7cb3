"""``python -m gradcheck.mutate``: plant one bug at a time in a module and see whether a check catches it.

    python -m gradcheck.mutate TARGET --check COMMAND [--functions F,G] [--kinds K,L] [--ids ID,ID]
        [--equivalents FILE] [--timeout S] [--jobs N] [--include-guards] [--json PATH]
        [--fail-under PCT] [--list] [--quiet]

TARGET is a dotted module name (``numpy_attention.functional.softmax``) or a ``.py`` file.
COMMAND runs once per mutant, in a fresh process that imports the mutated module; exit 0
means the check passed (the mutant survived). Prints the table of mutants, the diff of
every survivor and the score; exits 0, or 1 with ``--fail-under`` when the score is below
PCT, or 2 when nothing can be measured (a bad target, or a check that fails unmutated).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from . import KINDS, MutationError, mutants, run
from .operators import Mutant
from .report import MutantResult


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gradcheck.mutate", description=__doc__.splitlines()[0])
    p.add_argument("target", help="dotted module name or path to a .py file")
    p.add_argument("--check", metavar="COMMAND",
                   help="the check to run on each mutant, e.g. 'python -m gradcheck --fast' or "
                        "'python -m pytest -x -q tests/test_x.py' (a leading 'python' is this interpreter)")
    p.add_argument("--functions", type=_names, metavar="F,G", help="mutate only these functions (or Class.method)")
    p.add_argument("--kinds", type=_names, metavar="K,L", help=f"mutant kinds, some of {','.join(KINDS)}")
    p.add_argument("--ids", type=_names, metavar="ID,ID", help="only the mutants with these ids")
    p.add_argument("--equivalents", type=Path, metavar="FILE",
                   help="JSON (or TOML) list of {id, reason}: mutants that compute the same function")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds per mutant (default 4x the unmutated run + 10)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="mutants run at the same time (default 1)")
    p.add_argument("--include-guards", action="store_true", help="also mutate input-validation ifs that end in a raise")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--fail-under", type=float, metavar="PCT", help="exit 1 when the score is below PCT percent")
    p.add_argument("--list", action="store_true", help="list the mutants (id, kind, function, line) and exit")
    p.add_argument("--quiet", action="store_true", help="no progress line per mutant")
    args = p.parse_args(argv)
    if not args.list and not args.check:
        p.error("--check COMMAND is required (or --list)")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1; got {args.jobs}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list:
            for m in mutants(args.target, functions=args.functions, kinds=args.kinds,
                             include_guards=args.include_guards, ids=args.ids):
                print(f"{m.id}  {m.kind:<10} {m.function}:{m.line}  {m.description}")
            return 0
        lock, done = threading.Lock(), [0]

        def progress(mutant: Mutant, result: MutantResult) -> None:
            with lock:
                done[0] += 1
                print(f"[{done[0]}] {result.status:<8} {mutant.id} {mutant.function}:{mutant.line} "
                      f"{mutant.description[:70]} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)

        report = run(args.target, args.check, functions=args.functions, kinds=args.kinds,
                     equivalents=args.equivalents, timeout=args.timeout, jobs=args.jobs,
                     include_guards=args.include_guards, ids=args.ids, progress=None if args.quiet else progress)
    except (MutationError, ValueError) as err:
        print(f"gradcheck.mutate: {err}", file=sys.stderr)
        return 2
    print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if args.fail_under is not None and report.score < args.fail_under:
        print(f"score {report.score:.1f} % is below --fail-under {args.fail_under:g} %", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

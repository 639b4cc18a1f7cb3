"""The bug zoo: ten real mistakes in hand-written attention, and how each one is caught.

    python examples/bug_zoo.py [--outdir examples/figures] [--fast] [--no-torch]

Backward bugs (the backward does not differentiate its forward) are caught by
central finite differences, which point at the tensor and the element that
are off. Forward bugs (a wrong function, differentiated faithfully) pass
finite differences; only a reference catches them: torch when installed, else
an independent loop-by-loop NumPy forward. Each bug's correct twin passes the
same check. Draws bug_zoo.png: for each bug, the largest relative error of
its wrong and of its correct version, the gap every check relies on.
"""

from __future__ import annotations

import numpy as np
from _common import parser, pyplot, save

from gradcheck import bugs
from gradcheck.reference import torch_available


def largest_error(report) -> float:
    """The largest scale-aware relative error over the report's tensors (floored for the log axis)."""
    return max([row.max_rel_error for row in report.rows if row.max_rel_error is not None] + [1e-17])


def plot(errors: dict, outdir) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(errors)
    rows = np.arange(len(names))
    ax.barh(rows - 0.2, [errors[n][0] for n in names], height=0.4, color="tab:red", label="with the bug")
    ax.barh(rows + 0.2, [errors[n][1] for n in names], height=0.4, color="tab:green", label="correct version")
    ax.set_yticks(rows, names)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("largest relative error over the checked tensors (scale-aware)")
    ax.set_title("Bug zoo: wrong and correct versions under the same check")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    save(fig, outdir, "bug_zoo.png")
    plt.close(fig)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="finite differences along random directions only")
    p.add_argument("--no-torch", action="store_true", help="judge forward bugs with the NumPy reference")
    args = p.parse_args()
    use_torch = not args.no_torch and torch_available()
    reference = "torch autograd" if use_torch else "NumPy loop reference (torch not installed or --no-torch)"
    print(f"bug zoo: {len(bugs.BUGS)} bugs; finite differences {'fast' if args.fast else 'exhaustive'}; "
          f"forward bugs judged by {reference}\n")

    caught_all, errors = True, {}
    for number, bug in enumerate(bugs.BUGS, 1):
        wrong = bugs.detect(bug, fast=args.fast, use_torch=use_torch)
        right = bugs.run_check(bug.right(), bug.caught_by, fast=args.fast, use_torch=use_torch)
        caught_all &= wrong.caught and not right.caught
        print(f"{number:2}. {bug.name}: {bug.mistake}")
        print(f"    {'CAUGHT' if wrong.caught else 'MISSED'} by {bug.caught_by}: {wrong.how}")
        if bug.caught_by == bugs.REFERENCE:
            blind = bugs.run_check(bug.wrong(), bugs.FINITE_DIFFERENCES, fast=args.fast)
            print(f"    finite differences alone: {'caught' if blind.caught else 'passed'} ({blind.how})")
        print(f"    the correct version: {'passes' if not right.caught else 'FAILS'} ({right.how})")
        if wrong.report is not None:
            errors[f"{bug.name} [{bug.caught_by}]"] = (largest_error(wrong.report), largest_error(right.report))
            print("\n".join("    | " + line for line in str(wrong.report).splitlines()))
        print()

    plot(errors, args.outdir)
    print("every bug caught, every correct version passes" if caught_all else "SOME BUG WAS MISSED")
    raise SystemExit(0 if caught_all else 1)


if __name__ == "__main__":
    np.set_printoptions(precision=4, suppress=True)
    main()

"""The bug zoo: ten real mistakes in hand-written attention, and how each one is caught.

    python examples/bug_zoo.py [--outdir examples/figures] [--fast] [--no-torch]

Backward bugs (the backward does not differentiate its forward) are caught by
central finite differences, which point at the tensor and the element that
are off. Forward bugs (a wrong function, differentiated faithfully) pass
finite differences; only a reference catches them: torch when installed, else
an independent loop-by-loop NumPy forward. Each bug's correct twin passes the
same check. Draws bug_zoo.png: for each bug of ``gradcheck.bugs.BUGS``, the
largest relative error of its wrong and of its correct version, the gap every
check relies on, with the check's pass tolerance (rtol) marked on each row.
A check that stops (an exception: the shapes disagree) is drawn as a hatched bar.
"""

from __future__ import annotations

import numpy as np
from _common import parser, pyplot, save

from gradcheck import bugs
from gradcheck.reference import torch_available

FLOOR = 1e-17  # the log axis starts here: an error of exactly 0 is drawn at it


def largest_error(report) -> float:
    """The largest scale-aware relative error over the report's tensors (floored for the log axis)."""
    return max([row.max_rel_error for row in report.rows if row.max_rel_error is not None] + [FLOOR])


CHECK_LABELS = {bugs.FINITE_DIFFERENCES: "FD", bugs.REFERENCE: "ref"}
STOPPED = 1e3  # where a stopped check's bar ends: past every error a check can report


def draw(rows: list[dict]):
    """One pair of bars per bug: the wrong version (red; hatched when the check stopped) and the correct
    one (green), each row with a black tick at its check's rtol, the pass tolerance."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 2.4), constrained_layout=True)
    y = np.arange(len(rows))
    wrong = [STOPPED if row["wrong"] is None else row["wrong"] for row in rows]
    wrong_bars = ax.barh(y - 0.2, wrong, height=0.4, color="tab:red", label="with the bug")
    for bar, row in zip(wrong_bars, rows):
        if row["wrong"] is None:
            bar.set_hatch("//")
            bar.set_facecolor("mistyrose")
            bar.set_edgecolor("tab:red")
            ax.text(2 * row["rtol"], bar.get_y() + 0.2, "check stopped: shapes disagree", va="center", fontsize=8)
    right_bars = ax.barh(y + 0.2, [row["right"] for row in rows], height=0.4, color="tab:green",
                         label="correct version")
    for yi, row in zip(y, rows):
        ax.plot([row["rtol"]] * 2, [yi - 0.45, yi + 0.45], color="black", linewidth=2)
        if row["right"] <= FLOOR:  # no bar to see: say so
            ax.text(2 * FLOOR, yi + 0.2, "correct: exactly 0", va="center", fontsize=8)
    ax.plot([], [], color="black", linewidth=2, label="pass tolerance (rtol) of the row's check")
    ax.set_yticks(y, [f"{row['name']} [{CHECK_LABELS[row['caught_by']]}]" for row in rows], fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(FLOOR, STOPPED * 10)
    ax.invert_yaxis()
    ax.set_xlabel("largest relative error over the checked tensors (max |error| / the tensor's largest entry)")
    fig.suptitle(f"Bug zoo: {len(rows)} bugs, wrong and correct versions under the same check")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.text(0.01, 0.0, "[FD] a backward bug, caught by central finite differences.  [ref] a forward bug (a wrong "
             "function, differentiated\nfaithfully): finite differences pass it; a reference catches it, torch "
             "autograd or, without torch, a loop-by-loop NumPy forward.", fontsize=8, va="top")
    return fig, len(wrong_bars.patches), len(right_bars.patches)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="finite differences along random directions only")
    p.add_argument("--no-torch", action="store_true", help="judge forward bugs with the NumPy reference")
    args = p.parse_args()
    use_torch = not args.no_torch and torch_available()
    reference = "torch autograd" if use_torch else "NumPy loop reference (torch not installed or --no-torch)"
    print(f"bug zoo: {len(bugs.BUGS)} bugs; finite differences {'fast' if args.fast else 'exhaustive'}; "
          f"forward bugs judged by {reference}\n")

    caught_all, rows = True, []
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
        rows.append({"name": bug.name, "caught_by": bug.caught_by, "rtol": right.report.rtol,
                     "wrong": None if wrong.report is None else largest_error(wrong.report),
                     "right": largest_error(right.report)})
        if wrong.report is not None:
            print("\n".join("    | " + line for line in str(wrong.report).splitlines()))
        print()

    plt = pyplot()
    fig, num_wrong, num_right = draw(rows)
    save(fig, args.outdir, "bug_zoo.png")
    plt.close(fig)
    print(f"bug_zoo.png: {num_wrong} bars with the bug and {num_right} correct ones for the {len(bugs.BUGS)} bugs")
    print("every bug caught, every correct version passes" if caught_all else "SOME BUG WAS MISSED")
    raise SystemExit(0 if caught_all else 1)


if __name__ == "__main__":
    np.set_printoptions(precision=4, suppress=True)
    main()

"""How strong is your check? Mutation testing of a hand-written linear layer.

    python examples/mutation_demo.py [--jobs N]

A linear layer ``out = x W^T + b`` with its backward written by hand, and two checks of it:

* ``weak_check``: finite differences of ``sum(out)`` (an all-ones upstream gradient) on
  square shapes (batch = in = out = 4): the test that is quick to write;
* ``strong_check``: ``gradcheck.check`` on non-square shapes, with its random upstream gradient.

``gradcheck.mutate.run`` plants one bug at a time in the two functions (a sign, a dropped
term, a missing transpose, a wrong axis, ...), runs each check on every mutant in a fresh
process, and lists the mutants the check let through. The weak check passes two real bugs:
``dout.T @ x`` without the transpose (square shapes and ones make ``dout @ x`` equal) and the
bias gradient summed over the wrong axis (every sum of ones is 4). ``gradcheck.check`` kills both.
"""

from __future__ import annotations

import numpy as np
from _common import parser

import gradcheck
import gradcheck.mutate


# --- the layer, as a user would write it -------------------------------------------------
def linear_forward(x, weight, bias):
    out = x @ weight.T + bias
    return out, (x, weight)


def linear_backward(dout, cache):
    x, weight = cache
    dx = dout @ weight
    dweight = dout.T @ x
    dbias = dout.sum(axis=0)
    return dx, dweight, dbias


# --- two checks: each returns True when the layer passes -----------------------------------
def weak_check() -> bool:
    """Finite differences of sum(out), square shapes."""
    rng = np.random.default_rng(0)
    x, weight, bias = rng.standard_normal((4, 4)), rng.standard_normal((4, 4)), rng.standard_normal(4)
    out, cache = linear_forward(x, weight, bias)
    ones = np.ones_like(out)
    analytic = linear_backward(ones, cache)
    numeric = gradcheck.numerical_gradients(lambda *a: linear_forward(*a)[0], [x, weight, bias], ones)
    return all(a.shape == n.shape and np.allclose(a, n) for a, n in zip(analytic, numeric))


def strong_check() -> bool:
    """gradcheck.check: non-square shapes, a random upstream gradient, strict float64 tolerances."""
    rng = np.random.default_rng(0)
    x, weight, bias = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    return gradcheck.check(linear_forward, linear_backward, (x, weight, bias)).passed


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="mutants run at the same time (default 1)")
    args = p.parse_args()
    for check in (weak_check, strong_check):
        report = gradcheck.mutate.run([linear_forward, linear_backward], check, jobs=args.jobs)
        print(f"== {check.__name__}: {check.__doc__.splitlines()[0]}\n{report}\n")


if __name__ == "__main__":
    main()

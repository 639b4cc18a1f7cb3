"""Fit the polynomials of float32's erfc and Phi in numpy_attention/functional/erf.py, and print them.

    python tools/fit_erfc32.py [--phi] [--degree N]

erfc takes the form of Numerical Recipes' ``erfcc`` (Press et al., section 6.2), and
the GELU's Phi (``--phi``) the same form on ``a = |x|`` with its own ``p``::

    erfc(y)  = t * exp(-y^2 + E(t)),       t = 1 / (1 + y / 2),    y >= 0   (degree 9)
    Phi(-a)  = t * exp(-a^2 / 2 + F(t)),   t = 1 / (1 + 0.4 a),    a >= 0   (degree 8)

so ``E(t) = log(erfc(y) exp(y^2) / t)``, and an error e in E is a relative error
exp(e) - 1 ~ e of erfc: fitting E to a small maximum error fits erfc's relative
error (likewise F and Phi). The fit is Lawson's iteration (least squares reweighted by
each point's error, which converges to the minimax polynomial) on 200 001 points out to
where float32's value is 0; math.erfc is the reference.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

Y_MAX = 10.5  # erfc(10.5) ~ 7e-50 rounds to 0 in float32 (its smallest number is 1.4e-45)
# (p of t = 1 / (1 + p u), the largest u, the target function of u, the exponent's factor c in -c u^2)
FORMS = {
    "erfc": (0.5, Y_MAX, math.erfc, 1.0),
    "phi": (0.4, Y_MAX * math.sqrt(2.0), lambda a: 0.5 * math.erfc(a / math.sqrt(2.0)), 0.5),
}


def fit(degree: int, form: str = "erfc", points: int = 200_001, iterations: int = 60) -> tuple[np.ndarray, float]:
    """(coefficients of E (or F), highest power first; the largest |error| over the points)."""
    p, u_max, function, c = FORMS[form]
    u = np.linspace(0.0, u_max, points)
    t = 1.0 / (1.0 + p * u)
    target = np.log(np.array([function(v) for v in u]) / t) + c * u * u  # no overflow: log first
    powers = np.vander(t, degree + 1)  # columns t^degree, ..., t, 1
    weights = np.full(points, 1.0 / points)
    for _ in range(iterations):
        root = np.sqrt(weights)
        coefficients = np.linalg.lstsq(powers * root[:, None], target * root, rcond=None)[0]
        error = np.abs(powers @ coefficients - target)
        weights = weights * error
        weights /= weights.sum()
    return coefficients, float(error.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phi", action="store_true", help="fit F of Phi (the GELU's) instead of E of erfc")
    parser.add_argument("--degree", type=int, default=None, help="default: 9 for erfc, 8 for Phi")
    args = parser.parse_args()
    form = "phi" if args.phi else "erfc"
    degree = args.degree or (8 if args.phi else 9)
    coefficients, error = fit(degree, form)
    print(f"# {form}, degree {degree}, largest relative error (float64 evaluation) {error:.1e}")
    print(("F32" if args.phi else "E32") + " = (" + ", ".join(f"{c:.17e}" for c in coefficients) + ")")


if __name__ == "__main__":
    main()

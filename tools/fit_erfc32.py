"""Fit the polynomial of the float32 erfc in numpy_attention/functional/erf.py, and print it.

    python tools/fit_erfc32.py [--degree 9]

The form is that of Numerical Recipes' ``erfcc`` (Press et al., section 6.2)::

    erfc(y) = t * exp(-y^2 + E(t)),   t = 1 / (1 + y / 2),   y >= 0

so ``E(t) = log(erfc(y) exp(y^2) / t)``, and an error e in E is a relative error
exp(e) - 1 ~ e of erfc: fitting E to a small maximum error fits erfc's relative
error. The fit is Lawson's iteration (least squares reweighted by each point's
error, which converges to the minimax polynomial) on 200 001 points of y in
[0, Y_MAX], the range where float32's erfc is not 0; math.erfc is the reference.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

Y_MAX = 10.5  # erfc(10.5) ~ 7e-50 rounds to 0 in float32 (its smallest number is 1.4e-45)


def fit(degree: int, points: int = 200_001, iterations: int = 60) -> tuple[np.ndarray, float]:
    """(coefficients of E, highest power first; the largest |error| of E over the points)."""
    y = np.linspace(0.0, Y_MAX, points)
    t = 1.0 / (1.0 + 0.5 * y)
    target = np.log(np.array([math.erfc(v) for v in y]) / t) + y * y  # log(erfc exp(y^2) / t), no overflow
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
    parser.add_argument("--degree", type=int, default=9)
    degree = parser.parse_args().degree
    coefficients, error = fit(degree)
    print(f"# degree {degree}, largest relative error of erfc (float64 evaluation) {error:.1e}")
    print("E32 = (" + ", ".join(f"{c:.17e}" for c in coefficients) + ")")


if __name__ == "__main__":
    main()

"""Central finite differences of a scalar projection ``f(x) = sum(forward(x) * dout)``.

The analytic backward returns ``d/dx sum(forward(x) * dout)`` for each input;
the same quantity, one input element at a time, is::

    (f(x + eps e_i) - f(x - eps e_i)) / (2 eps),   error O(eps^2)

and along a direction ``u`` (the fast mode) it is the directional derivative::

    (f(x + eps u) - f(x - eps u)) / (2 eps)  ~  <grad f(x), u>

Both divide by the step actually taken, ``(x + eps) - (x - eps)`` as stored
in the array's dtype, so rounding of the perturbed value (large in float32)
does not bias the quotient. The perturbed array is always restored to its
exact original bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np


def central_differences(objective: Callable[[], float], x: np.ndarray, eps: float) -> np.ndarray:
    """Gradient of ``objective()`` with respect to ``x``, perturbing ``x`` in place one element at a time.

    ``objective`` reads ``x`` (it is evaluated at x + eps e_i and x - eps e_i);
    ``x`` is restored element by element, so it is bit-for-bit unchanged afterwards.
    Returns a float64 array of x's shape.
    """
    if not x.flags.c_contiguous:
        raise ValueError("central_differences perturbs x in place: x must be a C-contiguous array")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + eps
        plus, step_plus = objective(), float(flat_x[i])
        flat_x[i] = original - eps
        minus, step_minus = objective(), float(flat_x[i])
        flat_x[i] = original
        flat_grad[i] = (plus - minus) / (step_plus - step_minus)
    return grad


def directional_difference(
    objective: Callable[[], float], x: np.ndarray, direction: np.ndarray, eps: float
) -> tuple[float, np.ndarray]:
    """``f(x + eps u) - f(x - eps u)`` and the displacement actually taken, ``(x + eps u) - (x - eps u)``.

    With ``g`` the analytic gradient, ``<g, displacement>`` is what the
    difference of objectives should equal (to O(eps^3)); comparing the two
    checks ``g`` along ``u`` with two evaluations instead of 2 * x.size.
    ``x`` is perturbed in place and restored exactly.
    """
    original = x.copy()
    step = (eps * direction).astype(x.dtype)
    np.add(original, step, out=x)
    plus, x_plus = objective(), x.astype(np.float64)
    np.subtract(original, step, out=x)
    minus, x_minus = objective(), x.astype(np.float64)
    np.copyto(x, original)
    return plus - minus, x_plus - x_minus


def numerical_gradients(
    forward: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    dout: np.ndarray,
    eps: float = 1e-6,
    wrt: Sequence[int] | None = None,
) -> list[np.ndarray | None]:
    """Central-difference gradient of ``sum(forward(*inputs) * dout)`` for each input in ``wrt``.

    ``forward`` returns the output only. Inputs not in ``wrt`` get ``None``.
    The caller's arrays are never touched: the perturbations are made on copies.
    """
    inputs = [np.array(x, copy=True, order="C") for x in inputs]
    wrt = range(len(inputs)) if wrt is None else wrt

    def objective() -> float:
        return float(np.sum(forward(*inputs) * dout, dtype=np.float64))

    grads: list[np.ndarray | None] = [None] * len(inputs)
    for i in wrt:
        grads[i] = central_differences(objective, inputs[i], eps)
    return grads

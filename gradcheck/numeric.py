"""Central finite differences of a scalar projection ``sum(forward(x) * dout)``.

The analytic backward returns ``d/dx sum(forward(x) * dout)`` for each input;
the same quantity, one input element at a time, is::

    (f(x + eps e_i) - f(x - eps e_i)) / (2 eps),   f(x) = sum(forward(x) * dout)

with an error of O(eps^2). Perturbations are made on private copies, so the
caller's arrays are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np


def numerical_gradients(
    forward: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    dout: np.ndarray,
    eps: float = 1e-6,
    wrt: Sequence[int] | None = None,
) -> list[np.ndarray | None]:
    """Central-difference gradient of ``sum(forward(*inputs) * dout)`` for each input in ``wrt``.

    ``forward`` returns the output only. Inputs not in ``wrt`` get ``None``.
    """
    inputs = [np.array(x, copy=True) for x in inputs]
    wrt = range(len(inputs)) if wrt is None else wrt

    def objective() -> float:
        return float(np.sum(forward(*inputs) * dout, dtype=np.float64))

    grads: list[np.ndarray | None] = [None] * len(inputs)
    for i in wrt:
        x = inputs[i]
        grad = np.zeros(x.shape, dtype=np.float64)
        flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
        for j in range(flat_x.size):
            original = flat_x[j]
            flat_x[j] = original + eps
            plus = objective()
            flat_x[j] = original - eps
            minus = objective()
            flat_x[j] = original
            flat_grad[j] = (plus - minus) / (2 * eps)
        grads[i] = grad
    return grads

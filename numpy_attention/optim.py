"""Optimizers that update a Module's ``params`` in place from its ``grads``.

See docs/derivations.md, section "Adam".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .module import Module
from .validation import check_bool, check_real, describe


def _modules(modules: Module | Iterable[Module]) -> list[Module]:
    """One Module or an iterable of them, as a list (checked)."""
    found = [modules] if isinstance(modules, Module) else modules
    try:
        found = list(found)
    except TypeError:
        raise TypeError(f"modules must be a Module or an iterable of Modules; got {describe(modules)}") from None
    for module in found:
        if not isinstance(module, Module):
            raise TypeError(f"modules must be a Module or an iterable of Modules; got an item {describe(module)}")
    if not found:
        raise ValueError("modules must hold at least one Module; got none")
    return found


def _non_negative(value: Any, name: str) -> float:
    value = check_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return value


class Adam:
    """Adam, as ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient, optional AMSGrad).

    ``Adam(modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)``;
    ``step()`` updates every parameter of ``modules`` in place from its gradient,
    ``zero_grad()`` clears the gradients. For each parameter, at step t::

        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2                 (v_max = max(v_max, v) with amsgrad)
        param -= lr / (1 - beta1**t) * m / (sqrt(v / (1 - beta2**t)) + eps)

    Parameters
    ----------
    modules : Module or iterable of Modules
        Their ``params`` and ``grads`` dicts, read when each step is taken.
    """

    def __init__(
        self,
        modules: Module | Iterable[Module],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        self.modules = _modules(modules)
        self.lr = _non_negative(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {describe(betas)}")
        self.betas = tuple(check_real(beta, f"betas[{i}]") for i, beta in enumerate(betas))
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1); got {beta!r}")
        self.eps = _non_negative(eps, "eps")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.amsgrad = check_bool(amsgrad, "amsgrad")
        self.step_count = 0
        # Per parameter, keyed by (module position, name): the moment estimates m, v (and v_max).
        self.state: dict[tuple[int, str], dict[str, np.ndarray]] = {}

    def zero_grad(self) -> None:
        for module in self.modules:
            module.zero_grad()

    def step(self) -> None:
        """One Adam update of every parameter, in place."""
        self.step_count += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1.0 - beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.step_count)
        step_size = self.lr / bias_correction1
        for position, module in enumerate(self.modules):
            for name, param in module.params.items():
                grad = module.grads[name]
                if self.weight_decay:
                    grad = grad + self.weight_decay * param
                state = self.state.get((position, name))
                if state is None:
                    state = {"m": np.zeros_like(param), "v": np.zeros_like(param)}
                    if self.amsgrad:
                        state["v_max"] = np.zeros_like(param)
                    self.state[(position, name)] = state
                m, v = state["m"], state["v"]
                m *= beta1
                m += (1.0 - beta1) * grad
                v *= beta2
                v += (1.0 - beta2) * grad * grad
                if self.amsgrad:
                    v = np.maximum(state["v_max"], v, out=state["v_max"])
                denominator = np.sqrt(v) / bias_correction2_sqrt + self.eps
                param -= step_size * m / denominator

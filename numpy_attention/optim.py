"""Optimizers that update a Module's ``params`` in place from its ``grads``, and gradient clipping.

See docs/derivations.md, sections "Adam" and "AdamW and gradient clipping".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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


def _decay_table(
    modules: list[Module], param_groups: Any, weight_decay: float
) -> dict[tuple[int, str], float]:
    """(module position, parameter name) -> weight decay, for every parameter the optimizer updates.

    Without ``param_groups`` every parameter is updated with ``weight_decay``. With them (torch's
    param groups; a parameter given as its array in ``module.params``, or as its key there,
    which names that key in every module), only the listed parameters are, each with its
    group's ``weight_decay`` (default: the optimizer's).
    """
    if param_groups is None:
        return {(position, name): weight_decay for position, module in enumerate(modules) for name in module.params}
    if isinstance(param_groups, (str, Mapping)) or not isinstance(param_groups, Iterable):
        raise TypeError(f"param_groups must be a list of dicts {{'params': [names], 'weight_decay': float}}; "
                        f"got {describe(param_groups)}")
    table: dict[tuple[int, str], float] = {}
    for index, group in enumerate(param_groups):
        where = f"param_groups[{index}]"
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{where} must be a dict with a 'params' list of parameter names; got {describe(group)}")
        unknown = sorted(set(group) - {"params", "weight_decay"})
        if unknown:
            raise ValueError(f"{where} has unsupported options {unknown}; expected 'params' and 'weight_decay'")
        decay = _non_negative(group.get("weight_decay", weight_decay), f"{where}['weight_decay']")
        names = group["params"]
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise TypeError(f"{where}['params'] must be a list of parameter names; got {describe(names)}")
        for item in names:
            if isinstance(item, np.ndarray):  # the parameter array itself, as torch takes tensors
                owners = [(p, n) for p, module in enumerate(modules) for n, v in module.params.items() if v is item]
            else:  # a name: that key of every module that has it
                owners = [(p, item) for p, module in enumerate(modules) if item in module.params]
            label = describe(item) if isinstance(item, np.ndarray) else repr(item)
            if not owners:
                raise ValueError(f"{where}['params'] holds {label}, which is no parameter of the modules")
            for key in owners:
                if key in table:
                    raise ValueError(f"{where}['params'] holds {label}, which is already in an earlier group")
                table[key] = decay
    return table


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
    param_groups : list of dicts, optional
        ``{"params": [arrays or names], "weight_decay": wd}`` as torch's param groups
        (the arrays of ``module.params``, or their keys): only these parameters are
        updated, each with its group's weight decay.
    """

    decoupled = False  # AdamW: the decay shrinks the parameter instead of joining the gradient

    def __init__(
        self,
        modules: Module | Iterable[Module],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        param_groups: Iterable[Mapping[str, Any]] | None = None,
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
        self.decay = _decay_table(self.modules, param_groups, self.weight_decay)
        self.step_count = 0
        # Per parameter, keyed by (module position, name): the moment estimates m, v (and v_max).
        self.state: dict[tuple[int, str], dict[str, np.ndarray]] = {}

    def zero_grad(self) -> None:
        for module in self.modules:
            module.zero_grad()

    def step(self) -> None:
        """One update of every parameter, in place."""
        self.step_count += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1.0 - beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.step_count)
        step_size = self.lr / bias_correction1
        for (position, name), weight_decay in self.decay.items():
            param, grad = self.modules[position].params[name], self.modules[position].grads[name]
            if weight_decay and self.decoupled:
                param *= 1.0 - self.lr * weight_decay
            elif weight_decay:
                grad = grad + weight_decay * param
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


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay (default 0.01).

    Same arguments as :class:`Adam`; at each step every parameter first shrinks,
    ``param *= 1 - lr * weight_decay``, then takes the Adam step on its gradient
    alone. nanoGPT's grouping (decay only the parameters of two or more dimensions) is::

        AdamW(model, lr, betas, param_groups=[{"params": decayed, "weight_decay": wd},
                                              {"params": others, "weight_decay": 0.0}])

    See docs/derivations.md, section "AdamW and gradient clipping".
    """

    decoupled = True

    def __init__(
        self,
        modules: Module | Iterable[Module],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        param_groups: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(modules, lr, betas, eps, weight_decay, amsgrad, param_groups=param_groups)


def _gradient_arrays(grads: Any) -> list[np.ndarray]:
    """The gradient arrays of a Module, of Modules, of a dict name -> array, or of a list of arrays."""
    if isinstance(grads, Module):
        return list(grads.grads.values())
    if isinstance(grads, Mapping):
        grads = list(grads.values())
    if isinstance(grads, np.ndarray) or not isinstance(grads, Iterable):
        raise TypeError(f"grads must be a Module, Modules, a dict of arrays or a list of arrays; got {describe(grads)}")
    arrays = []
    for item in grads:
        if isinstance(item, Module):
            arrays.extend(item.grads.values())
        elif isinstance(item, np.ndarray) and item.dtype.kind == "f":
            arrays.append(item)
        else:
            raise TypeError(f"grads must hold Modules or float arrays; got an item {describe(item)}")
    return arrays


def clip_grad_norm(grads: Any, max_norm: float) -> float:
    """Scale the gradients in place so that their global 2-norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: with ``total = sqrt(sum of every squared
    gradient element)``, every gradient is multiplied by
    ``min(1, max_norm / (total + 1e-6))``. Returns ``total``, the norm before clipping
    (NaN or inf when a gradient is; the gradients then become NaN, as in torch).
    See docs/derivations.md, section "AdamW and gradient clipping".

    Parameters
    ----------
    grads : Module, iterable of Modules, dict name -> array, or iterable of arrays
        Their ``grads`` (or the arrays themselves) are scaled in place.
    max_norm : float
        The largest global norm allowed, >= 0.
    """
    arrays = _gradient_arrays(grads)
    max_norm = _non_negative(max_norm, "max_norm")
    if not arrays:
        return 0.0
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in arrays))
    clip_coef = max_norm / (total + 1e-6)
    clip_coef = clip_coef if math.isnan(clip_coef) else min(clip_coef, 1.0)  # torch's clamp(max=1) keeps NaN
    if clip_coef != 1.0:
        for g in arrays:
            g *= clip_coef
    return total

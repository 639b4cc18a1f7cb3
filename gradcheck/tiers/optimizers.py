"""The optimizer tier (torch only): every optimizer of ``numpy_attention.optim``, step for step against torch.optim.

Each optimizer class whose name torch.optim also has (Adam, and AdamW when it
exists) updates two modules' parameters from the same seeded gradients as torch's
optimizer of that name with the same options, for several steps; the parameters
after every step are compared (one row per parameter, shape (steps, ...)). The
option sets (betas, eps, weight decay, amsgrad, a large learning rate) are passed
where the class's constructor takes them.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

import numpy_attention as na
from numpy_attention import optim

from ..reference import REFERENCE_TOLERANCES, require_torch
from ..report import Report, compare
from ..targets import Entry
from .common import TierTarget

STEPS = 6
OPTION_SETS: dict[str, dict] = {
    "defaults": {},
    "betas-eps-lr": {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.1},
    "amsgrad-weight-decay": {"lr": 0.02, "weight_decay": 0.05, "amsgrad": True},
}


def optimizer_classes() -> list[str]:
    """The optimizers of numpy_attention.optim: classes defined there with a ``step`` method."""
    return [name for name, obj in vars(optim).items()
            if isinstance(obj, type) and obj.__module__ == optim.__name__ and callable(getattr(obj, "step", None))]


def optimizer_check(name: str, options: dict) -> Report:
    """``STEPS`` steps of ours and of ``torch.optim.<name>`` on the same parameters and gradients."""
    torch = require_torch()
    modules = [na.Linear(4, 3, rng=np.random.default_rng(60)),
               na.Linear(3, 2, bias=False, rng=np.random.default_rng(61))]
    ours = getattr(optim, name)(modules, **options)
    params = [(i, key, value) for i, module in enumerate(modules) for key, value in module.params.items()]
    tensors = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for _, _, value in params]
    theirs = getattr(torch.optim, name)(tensors, **options)
    rng = np.random.default_rng(62)
    ours_trace, torch_trace = [[] for _ in params], [[] for _ in params]
    for _ in range(STEPS):
        for (i, key, value), tensor in zip(params, tensors):
            grad = rng.standard_normal(value.shape) * rng.choice([1e-3, 1.0, 30.0])  # gradients of every size
            modules[i].grads[key][...] = grad
            tensor.grad = torch.tensor(grad)
        ours.step()
        theirs.step()
        for (_, _, value), tensor, mine, reference in zip(params, tensors, ours_trace, torch_trace):
            mine.append(value.copy())
            reference.append(tensor.detach().numpy().copy())
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(np.float64)]
    rows = [compare(f"{i}.{key}", np.stack(mine), np.stack(reference), atol, rtol)
            for (i, key, _), mine, reference in zip(params, ours_trace, torch_trace)]
    return Report(title=f"{name}({options}) against torch.optim.{name}, {STEPS} steps", rows=rows,
                  method=f"torch {torch.__version__} optim, float64", dtype="float64", atol=atol, rtol=rtol,
                  labels=("numpy", "torch"))


def optimizer_entries(name: str) -> list[Entry]:
    accepted = inspect.signature(getattr(optim, name)).parameters
    entries = []
    for label, options in OPTION_SETS.items():
        if not set(options) <= set(accepted):
            continue

        def build(dtype: np.dtype, options: dict = options) -> Any:
            return TierTarget((), torch_forward=optimizer_check, own_torch=lambda: optimizer_check(name, options),
                              skip_finite_differences="optimizer tier: step for step against torch.optim")

        entries.append(Entry(f"optim/{name}/{label}", build))
    return entries


ENTRIES: list[Entry] = [entry for name in optimizer_classes() for entry in optimizer_entries(name)]

"""``check_module``: a Module's input and parameter gradients against finite differences.

A module is checked as the functional pair it is underneath: a function of
its inputs *and* its parameters. :class:`ModulePair` presents it that way, so
one engine (:func:`gradcheck.check.run_check`) serves functions and modules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from numpy_attention.validation import describe

from .check import Slot, align_gradients, input_slots, make_slots, replaying, run_check
from .randomness import Replay, reachable
from .report import Report


def module_output(result: Any, who: str) -> np.ndarray:
    """A module's differentiated output: its return value, or the first element of a returned tuple
    (``ScaledDotProductAttention`` and ``MultiHeadAttention`` return ``(out, weights)``)."""
    out = result[0] if isinstance(result, tuple) and result else result
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{who} must return an array, or a tuple whose first element is one; got {describe(result)}")
    return out


def check_module_protocol(module: Any) -> None:
    missing = [name for name in ("params", "grads", "forward", "backward") if not hasattr(module, name)]
    if missing or not isinstance(module.params, dict) or not isinstance(module.grads, dict):
        raise TypeError(
            "module must follow the numpy_attention Module protocol (params and grads dicts, "
            f"forward, backward); got {describe(module)}" + (f" without {', '.join(missing)}" if missing else "")
        )
    if set(module.params) != set(module.grads):
        raise ValueError(
            f"module.params and module.grads must have the same keys; got {sorted(module.params)} "
            f"and {sorted(module.grads)}"
        )


class ModulePair:
    """``forward(*inputs, *params) -> (out, None)`` and ``backward(dout, None) -> (input grads..., param grads...)``.

    The parameters given to ``forward`` are copied into ``module.params`` (the
    arrays the module reads) before each call; ``backward`` zeroes
    ``module.grads`` first, so what it returns is this one backward's gradient.
    """

    def __init__(self, module: Any, input_slots: Sequence[Slot], forward_kwargs: dict) -> None:
        self.module = module
        self.input_slots = list(input_slots)
        self.param_names = list(module.params)
        self.forward_kwargs = forward_kwargs
        self.who = type(module).__name__

    def forward(self, *arrays: np.ndarray) -> tuple[np.ndarray, None]:
        num_inputs = len(self.input_slots)
        for name, value in zip(self.param_names, arrays[num_inputs:]):
            np.copyto(self.module.params[name], value)
        result = self.module.forward(*arrays[:num_inputs], **self.forward_kwargs)
        return module_output(result, f"{self.who}.forward"), None

    def backward(self, dout: np.ndarray, cache: None) -> list[Any]:
        for grad in self.module.grads.values():
            grad.fill(0)
        input_grads = align_gradients(self.module.backward(dout), self.input_slots, f"{self.who}.backward")
        return [*input_grads, *(self.module.grads[name] for name in self.param_names)]


class ModuleState:
    """Parameters, gradients and caches of a module and its submodules, to put back after a check."""

    def __init__(self, module: Any) -> None:
        self.params = [(array, array.copy()) for array in module.params.values()]
        modules = reachable(module, lambda obj: isinstance(getattr(obj, "grads", None), dict))
        self.grads = [(array, array.copy()) for m in modules for array in m.grads.values()]
        self.caches = [(m, m.__dict__["_cache"]) for m in modules if "_cache" in getattr(m, "__dict__", {})]

    def restore(self) -> None:
        for array, saved in self.params + self.grads:
            np.copyto(array, saved)
        for m, cache in self.caches:
            m._cache = cache


@contextmanager
def module_as_pair(module: Any, inputs: Sequence[Any], names: Sequence[str] | None,
                   forward_kwargs: dict) -> Iterator[tuple[ModulePair, list[Slot], Replay]]:
    """The module as a pair, the slots of its inputs then its parameters, and the replay of its generators.

    On exit, the module is put back as it was: parameters, gradients, caches, generator states.
    """
    check_module_protocol(module)
    slots = input_slots(module.forward, inputs, names)
    param_slots = make_slots(list(module.params.values()), list(module.params), what="module.params")
    pair = ModulePair(module, slots, forward_kwargs)
    state = ModuleState(module)
    try:
        with replaying(module) as replay:
            yield pair, slots + param_slots, replay
    finally:
        state.restore()


def check_module(
    module: Any,
    *inputs: Any,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    fast: bool = False,
    seed: int = 0,
    names: Sequence[str] | None = None,
    **forward_kwargs: Any,
) -> Report:
    """Check ``module.backward``: the input gradients it returns and every entry of ``module.grads``.

    ``module.forward(*inputs, **forward_kwargs)`` is differentiated with respect
    to each float input and each parameter in ``module.params``. The output is
    forward's return value, or its first element when it returns a tuple.
    Options as :func:`gradcheck.check`; ``names`` names the inputs (parameters
    keep their keys). Dropout replays ``module.rng`` (and any generator of a
    submodule), so the module's mode (train/eval) is checked as it is set.

    The module is left as it was found: parameters, gradients, cached forward
    and generator states are restored, even when the check raises.
    """
    with module_as_pair(module, inputs, names, forward_kwargs) as (pair, slots, replay):
        return run_check(f"check_module({type(module).__name__})", pair.forward, pair.backward, slots,
                         eps=eps, atol=atol, rtol=rtol, fast=fast, seed=seed, replay=replay)

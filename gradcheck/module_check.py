"""``check_module``: a Module's input and parameter gradients against finite differences.

A module is checked as the functional pair it is underneath: a function of
its inputs *and* its parameters. :class:`ModulePair` presents it that way, so
one engine (:func:`gradcheck.check.run_check`) serves functions and modules.
Then one more row: the backward must accumulate into ``module.grads`` (a second
backward of the same forward adds the same gradient again), as the Module
contract says; a backward that assigns ``grads[name] = g`` passes the finite
differences and fails this row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from numpy_attention.validation import describe

from .check import Slot, align_gradients, input_slots, make_slots, replaying, run_check
from .randomness import Replay, reachable
from .report import Report, Row, compare

ACCUMULATION_ROW = "grads accumulate"


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
    It then runs a second backward of the same forward and keeps ``module.grads``
    after it in ``twice``: :meth:`accumulation_row` compares it with twice the first.
    """

    def __init__(self, module: Any, input_slots: Sequence[Slot], forward_kwargs: dict) -> None:
        self.module = module
        self.input_slots = list(input_slots)
        self.param_names = list(module.params)
        self.forward_kwargs = forward_kwargs
        self.who = type(module).__name__
        self.once: list[np.ndarray] = []
        self.twice: dict[str, np.ndarray] = {}

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
        self.once = [np.array(self.module.grads[name], copy=True) for name in self.param_names]
        if self.param_names:
            self.module.backward(dout)
            self.twice = {name: np.array(self.module.grads[name], copy=True) for name in self.param_names}
        return [*input_grads, *self.once]

    def accumulation_row(self, once: Sequence[np.ndarray], atol: float, rtol: float) -> Row:
        """``module.grads`` after two backwards against twice one backward's, the worst parameter shown."""
        rows = [compare(name, self.twice[name], 2 * grad, atol, rtol) for name, grad in zip(self.param_names, once)]
        worst = max(rows, key=lambda row: (not row.passed, row.max_rel_error or 0.0))
        if worst.passed:
            note = "two backwards of one forward give twice the gradient in every entry of module.grads"
        else:
            note = (f"module.grads[{worst.name!r}] after two backwards is not twice one backward's (analytic: "
                    "after two, numeric: twice one); backward must add into module.grads "
                    "(self.accumulate(name, grad) or grads[name] += grad), not assign grads[name] = grad")
        return Row(ACCUMULATION_ROW, worst.shape, worst.status, worst.max_abs_error,
                   worst.max_rel_error, worst.worst_index, worst.actual, worst.expected, worst.num_failed,
                   worst.num_checked, note)


class ModuleState:
    """What a check may change in a module and its submodules, to put back exactly afterwards.

    The ``params`` and ``grads`` dicts get their own array objects back, with their
    values (a backward that assigned ``grads[name] = g`` replaced one); the cache of
    the last forward and the train/eval flag are put back too. Generator states are
    the Replay's job.
    """

    def __init__(self, module: Any) -> None:
        modules = reachable(module, lambda obj: isinstance(getattr(obj, "grads", None), dict))
        if module not in modules:
            modules.append(module)
        self.dicts = [(d, dict(d), [(a, a.copy()) for a in d.values()])
                      for m in modules for d in (m.params, m.grads) if isinstance(d, dict)]
        self.caches = [(m, m.__dict__["_cache"]) for m in modules if "_cache" in getattr(m, "__dict__", {})]
        self.training = [(m, m.__dict__["training"]) for m in modules if "training" in getattr(m, "__dict__", {})]

    def restore(self) -> None:
        for d, entries, values in self.dicts:
            d.clear()
            d.update(entries)
            for array, saved in values:
                np.copyto(array, saved)
        for m, cache in self.caches:
            m._cache = cache
        for m, training in self.training:
            m.training = training


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

    The report ends with a row ``grads accumulate``: after two backwards of one
    forward, ``module.grads`` must hold twice one backward's gradient (the Module
    contract: backward adds into ``grads``); its note names the worst parameter.

    The module is left exactly as it was found, even when the check raises: the
    same parameter and gradient array objects with their values, the cached
    forward, the train/eval flag and the generator states.
    """
    with module_as_pair(module, inputs, names, forward_kwargs) as (pair, slots, replay):
        report = run_check(f"check_module({type(module).__name__})", pair.forward, pair.backward, slots,
                           eps=eps, atol=atol, rtol=rtol, fast=fast, seed=seed, replay=replay)
        if pair.param_names:
            report.rows.append(pair.accumulation_row(pair.once, report.atol, report.rtol))
        return report

"""Replaying randomness, so that every evaluation of a forward draws the same dropout mask.

A finite-difference check evaluates the forward hundreds of times and compares
them with one backward; dropout must therefore draw the *same* mask each time.
The convention: randomness comes from ``numpy.random.Generator`` objects that
the forward can reach, and the checker rewinds every one of them to its state
before the first evaluation, before every evaluation. It finds them in:

* ``functools.partial`` arguments: ``partial(attention_forward, dropout_p=0.1, rng=rng)``;
* a function's closure and default arguments: ``lambda q, k, v: attention_forward(..., rng=rng)``;
* a bound method's object and that object's attributes, recursively: ``module.rng``,
  the generators of submodules.

NumPy's legacy global generator (``np.random.seed``) is rewound too. Any other
randomness is caught by the checker's determinism test (two evaluations at the
same point must agree), which then says how to bind the generator.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Callable

import numpy as np

_MAX_DEPTH = 6


def reachable(root: Any, match: Callable[[Any], bool]) -> list[Any]:
    """Every distinct object reachable from ``root`` for which ``match`` is true (see the module docstring)."""
    found: dict[int, Any] = {}
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in seen or obj is None:
            return
        seen.add(id(obj))
        if match(obj):
            found[id(obj)] = obj
        if isinstance(obj, (np.ndarray, np.random.Generator, str, bytes, int, float, complex, type, types.ModuleType)):
            return
        if isinstance(obj, functools.partial):
            children = [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, types.MethodType):
            children = [obj.__self__, obj.__func__]
        elif isinstance(obj, types.BuiltinMethodType):  # e.g. rng.random
            children = [obj.__self__]
        elif isinstance(obj, types.FunctionType):
            cells = [cell.cell_contents for cell in obj.__closure__ or () if _has_contents(cell)]
            children = [*cells, *(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        elif hasattr(obj, "__dict__"):
            children = list(vars(obj).values())
        else:
            children = []
        for child in children:
            visit(child, depth + 1)

    visit(root, 0)
    return list(found.values())


def reachable_generators(root: Any) -> list[np.random.Generator]:
    """Every distinct ``numpy.random.Generator`` reachable from ``root``."""
    return reachable(root, lambda obj: isinstance(obj, np.random.Generator))


def _has_contents(cell: types.CellType) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell: a variable not yet assigned
        return False
    return True


class Replay:
    """Snapshot the generators reachable from some roots; ``rewind()`` puts them back to that state."""

    def __init__(self, *roots: Any) -> None:
        self.generators = reachable_generators(roots)
        self._states = [rng.bit_generator.state for rng in self.generators]
        self._legacy_state = np.random.get_state()  # noqa: NPY002 - user code may still use it

    def rewind(self) -> None:
        for rng, state in zip(self.generators, self._states):
            rng.bit_generator.state = state
        np.random.set_state(self._legacy_state)  # noqa: NPY002

"""``check`` and ``check_module``: analytic gradients against central finite differences.

Both draw a random upstream gradient ``dout`` (seeded), run the backward once,
and compare every gradient with central differences of
``f(x) = sum(forward(x) * dout)``:

* exhaustive (default): element by element, 2 forward calls per element;
* ``fast=True``: along ``FAST_DIRECTIONS`` random unit directions ``u`` per
  tensor, comparing ``<grad, u>`` with ``(f(x + eps u) - f(x - eps u)) / 2 eps``
  (torch's fast mode), 2 forward calls per direction whatever the tensor size.

The rule for an element (or a direction) to pass, and the error columns, are
defined in :mod:`gradcheck.report`. Inputs are copied before anything runs and
the copies are restored bit for bit after every perturbation; the caller's
arrays are never written. Randomness is replayed (:mod:`gradcheck.randomness`)
and a forward that is not deterministic is reported, not mis-checked.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from numpy_attention.validation import check_real, describe

from .numeric import central_differences, directional_difference
from .randomness import Replay
from .report import Report, Row, compare, failed, skipped


@dataclass(frozen=True)
class Tolerance:
    """Finite-difference step ``eps`` and the pass rule ``|a - n| <= atol + rtol * |n|``."""

    eps: float
    atol: float
    rtol: float


# float64: central differences with eps = 1e-6 are accurate to ~1e-8 absolute even for
# (8, 64, 64) tensors, so atol = 1e-6 leaves a margin for noise, and rtol = 1e-5
# still fails a gradient that is 0.1 % (1e-3) off (torch's rtol = 1e-3 would not).
# float32: rounding in the forward limits central differences to ~1e-3 relative
# (the best step is about cbrt(float32 eps) ~ 1e-2), so the check is ~1000x looser.
DEFAULT_TOLERANCES = {
    np.dtype(np.float64): Tolerance(eps=1e-6, atol=1e-6, rtol=1e-5),
    np.dtype(np.float32): Tolerance(eps=1e-2, atol=5e-3, rtol=2e-2),
}
FAST_DIRECTIONS = 4
FLOAT32_NOTE = (
    "float32 check: finite differences in float32 resolve gradients only to about 1e-2 relative, "
    "so smaller errors pass unnoticed; float64 is the recommended dtype for gradient checks"
)


@dataclass
class Slot:
    """One tensor under check: a private C-contiguous working copy, perturbed in place."""

    name: str
    array: Any
    original: Any
    differentiable: bool
    skip_reason: str = ""

    @property
    def shape(self) -> tuple:
        return getattr(self.array, "shape", ())


def make_slots(values: Sequence[Any], names: Sequence[str], what: str = "inputs") -> list[Slot]:
    """Float arrays are checked; integer and bool arrays and None are passed through and skipped."""
    slots = []
    for i, (name, value) in enumerate(zip(names, values)):
        if value is None:
            slots.append(Slot(name, None, None, False, "None: nothing to differentiate"))
        elif not isinstance(value, np.ndarray):
            raise TypeError(
                f"{what}[{i}] ({name!r}) must be a NumPy array (float32/float64 are checked; integer and "
                f"bool arrays are passed through); got {describe(value)}. Bind other options with "
                "functools.partial or a lambda"
            )
        elif value.dtype.kind in "biu":
            reason = f"{value.dtype} input is not differentiable: passed through, not checked"
            slots.append(Slot(name, value, value, False, reason))
        elif value.dtype in (np.float32, np.float64):
            slots.append(Slot(name, np.array(value, order="C", copy=True), value, True))
        else:
            raise TypeError(f"{what}[{i}] ({name!r}) must have dtype float32 or float64; got dtype {value.dtype}")
    return slots


def argument_names(function: Callable, count: int) -> list[str]:
    """The names of ``function``'s first ``count`` positional parameters, ``input<i>`` where unknown."""
    try:
        parameters = inspect.signature(function).parameters.values()
        names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return [names[i] if i < len(names) else f"input{i}" for i in range(count)]


def check_names(names: Any, count: int) -> list[str]:
    if not isinstance(names, (list, tuple)) or len(names) != count or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a list of {count} strings, one per input; got {names!r}")
    return list(names)


def input_slots(function: Callable, inputs: Any, names: Sequence[str] | None) -> list[Slot]:
    """Slots for a call ``function(*inputs)``, named by ``names`` or by function's parameters."""
    if not isinstance(inputs, (tuple, list)):
        raise TypeError(f"inputs must be a tuple of arrays (for one input write (x,)); got {describe(inputs)}")
    names = argument_names(function, len(inputs)) if names is None else check_names(names, len(inputs))
    return make_slots(inputs, names)


@contextmanager
def replaying(*roots: Any) -> Iterator[Replay]:
    """A :class:`Replay` of the generators reachable from ``roots``, rewound once more on exit."""
    replay = Replay(*roots)
    try:
        yield replay
    finally:
        replay.rewind()


def align_gradients(grads: Any, slots: Sequence[Slot], who: str = "backward") -> list[Any]:
    """Match what a backward returned to the slots, with a clear error for a wrong count, type or shape.

    Accepted: one gradient per input (None or anything at a skipped input), or
    one per differentiable input; a single array for a single gradient;
    trailing Nones past the inputs (linear's ``dbias`` when there is no bias);
    None when no input is differentiable (``Embedding.backward``).
    """
    if grads is None and not any(slot.differentiable for slot in slots):
        grads = [None] * len(slots)  # e.g. Embedding.backward: indices have no gradient
    if isinstance(grads, np.ndarray):
        grads = (grads,)
    elif not isinstance(grads, (tuple, list)):
        raise TypeError(
            f"{who} must return the input gradients: an array for one input, else a tuple of arrays; "
            f"got {describe(grads)}"
        )
    grads = list(grads)
    while len(grads) > len(slots) and grads[-1] is None:
        grads.pop()
    wanted = [slot for slot in slots if slot.differentiable]
    if len(grads) == len(wanted) and len(grads) != len(slots):
        grads_iter = iter(grads)
        grads = [next(grads_iter) if slot.differentiable else None for slot in slots]
    elif len(grads) != len(slots):
        expected = f"{len(wanted)}, one per differentiable input ({', '.join(s.name for s in wanted)})"
        if len(wanted) != len(slots):
            expected += f", or {len(slots)}, one per input"
        raise ValueError(f"{who} returned {len(grads)} gradient(s); expected {expected}")
    for slot, grad in zip(slots, grads):
        if not slot.differentiable:
            continue
        if grad is None:
            raise ValueError(
                f"{who} returned None for the gradient of {slot.name!r}; expected an array of shape {slot.shape}"
            )
        if not isinstance(grad, np.ndarray):
            raise TypeError(
                f"{who} returned {describe(grad)} for the gradient of {slot.name!r}; expected a NumPy array"
            )
        if grad.shape != slot.shape:
            raise ValueError(
                f"{who} returned a gradient of shape {grad.shape} for {slot.name!r}; "
                f"expected the shape of {slot.name!r}, {slot.shape}"
            )
    return grads


def split_forward_result(result: Any, who: str = "forward") -> tuple[np.ndarray, Any]:
    """``(out, cache)`` from a functional forward, with a clear error for anything else."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(
            f"{who} must return (out, cache) as the functional pairs do; got {describe(result)}"
            + (f" of length {len(result)}" if isinstance(result, tuple) else "")
        )
    out = result[0]
    if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
        raise TypeError(f"{who} must return a float32/float64 array as its output; got {describe(out)}")
    return out, result[1]


def resolve_tolerance(dtypes: Sequence[np.dtype], eps: Any, atol: Any, rtol: Any) -> tuple[Tolerance, np.dtype]:
    """The defaults of the least precise dtype involved, overridden by what the caller gave."""
    dtype = np.dtype(np.float32) if np.dtype(np.float32) in dtypes else np.dtype(np.float64)
    default = DEFAULT_TOLERANCES[dtype]
    values = {}
    given = {"eps": eps, "atol": atol, "rtol": rtol}
    for name, value in given.items():
        if value is None:
            values[name] = getattr(default, name)
            continue
        real = check_real(value, name)
        if real < 0 or (name == "eps" and real == 0):
            raise ValueError(f"{name} must be {'positive' if name == 'eps' else 'non-negative'}; got {value!r}")
        values[name] = real
    return Tolerance(**values), dtype


def _ensure_unchanged(slots: Sequence[Slot], who: str) -> None:
    for slot in slots:
        if slot.differentiable and not np.array_equal(slot.array, slot.original, equal_nan=True):
            raise ValueError(f"{who} modified its input {slot.name!r} in place; it must leave its inputs unchanged")


def run_check(
    title: str,
    forward: Callable,
    backward: Callable,
    slots: list[Slot],
    *,
    eps: Any = None,
    atol: Any = None,
    rtol: Any = None,
    fast: bool = False,
    seed: int = 0,
    replay: Replay,
) -> Report:
    """The shared engine of :func:`check` and :func:`check_module` (see the module docstring)."""
    if not isinstance(fast, (bool, np.bool_)):
        raise TypeError(f"fast must be a bool; got {describe(fast)}")
    arrays = [slot.array for slot in slots]

    def evaluate() -> tuple[np.ndarray, Any]:
        replay.rewind()
        return split_forward_result(forward(*arrays))

    out, _ = evaluate()
    _ensure_unchanged(slots, "forward")
    again, cache = evaluate()
    if out.shape != again.shape or not np.array_equal(out, again, equal_nan=True):
        raise ValueError(
            "forward is not deterministic: two calls with the same inputs gave different outputs. "
            "Draw randomness from a numpy.random.Generator the check can find and rewind: bound with "
            "functools.partial or captured by the function (e.g. rng=np.random.default_rng(0)), or "
            "module.rng for a module; see gradcheck.randomness"
        )
    dtypes = [slot.array.dtype for slot in slots if slot.differentiable] + [out.dtype]
    tolerance, dtype = resolve_tolerance(dtypes, eps, atol, rtol)

    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    dout.flags.writeable = False  # a backward may read dout, never write it
    grads = align_gradients(backward(dout, cache), slots)
    _ensure_unchanged(slots, "backward")
    grads = [None if g is None else np.array(g, dtype=g.dtype, copy=True) for g in grads]  # no aliasing of caches
    aliasing = _aliasing_row(evaluate, backward, dout, grads, slots)
    dout64 = dout.astype(np.float64)

    def objective() -> float:
        perturbed, _ = evaluate()
        return float(np.sum(perturbed.astype(np.float64) * dout64))

    rows: list[Row] = []
    for slot, grad in zip(slots, grads):
        if not slot.differentiable:
            rows.append(skipped(slot.name, slot.shape, slot.skip_reason))
        elif grad.dtype != slot.array.dtype:
            rows.append(failed(slot.name, slot.shape, f"gradient has dtype {grad.dtype}, the input {slot.array.dtype}"))
        elif fast:
            rows.append(_directional_row(slot, grad, objective, tolerance, rng))
        else:
            numeric = central_differences(objective, slot.array, tolerance.eps)
            rows.append(compare(slot.name, grad, numeric, tolerance.atol, tolerance.rtol))
    if aliasing is not None:
        rows.append(aliasing)
    return Report(
        title=title,
        rows=rows,
        method=f"fast: {FAST_DIRECTIONS} random directions per tensor" if fast else "exhaustive: every element",
        dtype=str(dtype),
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        eps=tolerance.eps,
        notes=[FLOAT32_NOTE] if dtype == np.float32 else [],
    )


def _aliasing_row(evaluate: Callable, backward: Callable, dout: np.ndarray, grads: list, slots: Sequence[Slot]
                  ) -> Row | None:
    """A failed row when editing the returned output in place changes the backward, else None.

    A caller may add a residual in place (``out += x``); if the output shares memory
    with what the backward reads, that edit corrupts the gradient. The output of a
    fresh forward is overwritten with NaN, the backward runs on that forward's cache,
    and the output is put back (it may be an input's own memory).
    """
    out, cache = evaluate()
    if not out.flags.writeable or out.size == 0:
        return None  # read-only: the caller cannot edit it either
    kept = out.copy()
    out[...] = np.nan
    try:
        with np.errstate(all="ignore"):
            edited = align_gradients(backward(dout, cache), slots)
    finally:
        np.copyto(out, kept)
    changed = [slot.name for slot, grad, again in zip(slots, grads, edited)
               if grad is not None and not np.array_equal(grad, again, equal_nan=True)]
    if not changed:
        return None
    return Row("output aliasing", out.shape, "FAIL", num_failed=len(changed), num_checked=len(slots),
               note=f"editing the returned output in place changed the gradient of {', '.join(changed)}: the "
                    "output shares memory with what the backward reads (return a copy)")


def _directional_row(slot: Slot, grad: np.ndarray, objective: Callable[[], float], tolerance: Tolerance,
                     rng: np.random.Generator) -> Row:
    """Directional derivatives along random unit directions: analytic <grad, u> against central differences."""
    analytic, numeric = [], []
    grad64 = grad.astype(np.float64)
    for _ in range(FAST_DIRECTIONS):
        direction = rng.standard_normal(slot.shape)
        direction /= max(np.linalg.norm(direction), np.finfo(np.float64).tiny)
        difference, displacement = directional_difference(objective, slot.array, direction, tolerance.eps)
        span = 2 * tolerance.eps  # report per unit step, on the scale of one gradient element
        analytic.append(np.sum(grad64 * displacement) / span)
        numeric.append(difference / span)
    row = compare(slot.name, np.array(analytic), np.array(numeric), tolerance.atol, tolerance.rtol)
    note = f"directional derivatives along {FAST_DIRECTIONS} random unit directions"
    if row.status == "FAIL":
        note += f"; worst is direction {row.worst_index[0]}: run fast=False to find the element"
    return replace(row, shape=slot.shape, worst_index=None, note=note)


def callable_name(function: Any) -> str:
    """``attention_forward`` for the function itself or a functools.partial of it."""
    inner = getattr(function, "func", function)
    return getattr(function, "__name__", None) or getattr(inner, "__name__", type(function).__name__)


def check(
    forward: Callable,
    backward: Callable,
    inputs: Sequence[Any],
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    fast: bool = False,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Report:
    """Check a functional pair ``forward(*inputs) -> (out, cache)``, ``backward(dout, cache) -> grads``.

    Parameters
    ----------
    forward, backward : the pair; bind non-array options with ``functools.partial`` or a lambda.
    inputs : tuple of arrays
        float32/float64 arrays are checked; integer and bool arrays (and None) are
        passed through and reported as skipped.
    eps, atol, rtol : float, optional
        Step and tolerances; the defaults depend on the dtype (``DEFAULT_TOLERANCES``).
    fast : bool
        Random directional derivatives instead of every element.
    seed : int
        Seeds ``dout`` and the fast-mode directions.
    names : list of str, optional
        Row names; default: forward's parameter names.

    Returns
    -------
    Report
        ``report.passed``, one row per input, ``print(report)`` for the table.

    Dropout: randomness drawn from a ``numpy.random.Generator`` bound in a
    ``functools.partial`` or captured by the forward is rewound before every
    evaluation, so all evaluations see one mask (:mod:`gradcheck.randomness`).
    """
    slots = input_slots(forward, inputs, names)
    with replaying(forward) as replay:
        return run_check(f"check({callable_name(forward)}, {callable_name(backward)})", forward, backward, slots,
                         eps=eps, atol=atol, rtol=rtol, fast=fast, seed=seed, replay=replay)

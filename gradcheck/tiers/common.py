"""What the tiers share: a target whose checks are written out, NaN-aware comparison, torch's MATH backend.

The suite's :class:`~gradcheck.suite.Target` runs finite differences and
``compare_with_torch``. A :class:`TierTarget` may replace either with its own
check (a function returning a :class:`~gradcheck.report.Report`), and may run
both inside a context (``tile_limits`` of the dense kernel). Its comparisons
with torch run under ``sdpa_kernel(SDPBackend.MATH)``, the backend whose NaN
and inf spread every implementation here follows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..check import align_gradients, input_slots, replaying, split_forward_result
from ..module_check import module_as_pair
from ..reference import REFERENCE_TOLERANCES, require_torch, torch_reference
from ..report import Report, Row, compare
from ..targets import Target


@dataclass
class TierTarget(Target):
    """A :class:`Target` with optional checks of its own and a context both checks run in.

    ``own_check(fast)`` replaces the finite-difference check, ``own_torch()`` the
    comparison with torch (which runs when ``torch_forward`` is set: give it the
    torch function ``own_torch`` compares with). ``context()`` wraps both.
    """

    own_check: Callable[[bool], Report] | None = None
    own_torch: Callable[[], Report] | None = None
    context: Callable[[], Any] = contextlib.nullcontext

    def check(self, fast: bool) -> Report:
        with self.context():
            return self.own_check(fast) if self.own_check is not None else super().check(fast)

    def compare_with_torch(self) -> Report:
        with self.context(), math_backend():
            return self.own_torch() if self.own_torch is not None else super().compare_with_torch()


@contextlib.contextmanager
def math_backend() -> Any:
    """torch's MATH backend for ``scaled_dot_product_attention``: its NaN and inf spread is the spec's."""
    require_torch()  # the clear ImportError first
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def compare_nan_aware(name: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> Row:
    """:func:`~gradcheck.report.compare`, except that a NaN or inf matches the same NaN or inf on the other side.

    Fails where one side is finite and the other is not (the note counts them and
    gives the first such index); the finite entries then follow the usual rule.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"{name}: cannot compare shapes {actual.shape} and {expected.shape}")
    same = (np.isnan(actual) & np.isnan(expected)) | (np.isinf(expected) & (actual == expected))
    finite = np.isfinite(actual) & np.isfinite(expected)
    misplaced = ~(same | finite)
    row = compare(name, np.where(finite, actual, 0.0), np.where(finite, expected, 0.0), atol, rtol)
    nonfinite = int(np.count_nonzero(~np.isfinite(expected)))
    note = f"{nonfinite} NaN/inf placed as torch's" if nonfinite else ""
    if not misplaced.any():
        return replace(row, note=note)
    index = tuple(int(i) for i in np.argwhere(misplaced)[0])
    return Row(name, actual.shape, "FAIL", row.max_abs_error, row.max_rel_error, index, float(actual[index]),
               float(expected[index]), int(np.count_nonzero(misplaced)) + row.num_failed, actual.size,
               note=f"{int(np.count_nonzero(misplaced))} entries finite on one side only (NaN/inf placement)")


def nan_aware_run(
    title: str, forward: Callable, backward: Callable | None, slots: list, reference: Callable,
    dout: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
) -> Report:
    """Ours (forward, backward of a seeded ``dout``) against ``reference(dout)``, NaN and inf placement included.

    ``dout(d)`` may edit the drawn upstream gradient (a NaN in it) before both sides use it.
    """
    out, cache = split_forward_result(forward(*[slot.array for slot in slots]))
    grad_out = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    if dout is not None:
        grad_out = dout(grad_out)
    grad_out.flags.writeable = False
    atol, rtol = REFERENCE_TOLERANCES[np.dtype(out.dtype)]
    expected_out, expected_grads = reference(grad_out.astype(np.float64))
    rows = [compare_nan_aware("output", out, expected_out, atol, rtol)]
    if backward is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            grads = align_gradients(backward(grad_out, cache), slots)
        for slot, grad, expected in zip(slots, grads, expected_grads):
            if slot.differentiable:
                rows.append(compare_nan_aware(f"d{slot.name}", grad, expected, atol, rtol))
    method = f"torch {require_torch().__version__} autograd (SDPA MATH backend), float64, NaN placement"
    return Report(title=title, rows=rows, method=method, dtype=str(out.dtype), atol=atol, rtol=rtol,
                  labels=("numpy", "torch"))


def torch_pair_run(target: Target, dout: Callable | None = None) -> Report:
    """A pair target against its ``torch_forward``, NaN-aware (see :func:`nan_aware_run`)."""
    slots = input_slots(target.forward, target.inputs, None)
    with replaying(target.forward):
        return nan_aware_run("compare_with_torch, NaN-aware", target.forward, target.backward, slots,
                             torch_reference(target.torch_forward, slots), dout)


def torch_module_run(target: Target, dout: Callable | None = None) -> Report:
    """A module target against its ``torch_forward(params, *inputs)``, NaN-aware."""
    with module_as_pair(target.module, target.inputs, None, target.forward_kwargs) as (pair, slots, _):
        num_inputs, names = len(pair.input_slots), pair.param_names

        def torch_function(*tensors: Any) -> Any:
            return target.torch_forward(dict(zip(names, tensors[num_inputs:])), *tensors[:num_inputs])

        return nan_aware_run(f"compare_module_with_torch({type(target.module).__name__}), NaN-aware",
                             pair.forward, pair.backward, slots, torch_reference(torch_function, slots), dout)


def as_tier(target: Target, **extra: Any) -> TierTarget:
    """``target`` as a :class:`TierTarget` with the given extra fields (``context``, ``own_check``, ...)."""
    return TierTarget(**{name: getattr(target, name) for name in Target.__dataclass_fields__}, **extra)

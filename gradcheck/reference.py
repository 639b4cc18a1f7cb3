"""Comparison with a reference implementation: PyTorch autograd, or a plain NumPy forward.

Finite differences prove that a backward matches its *own* forward; they
cannot see a forward that computes the wrong function. A reference can:

* :func:`compare_with_torch` runs the same computation through torch autograd
  in float64 and compares the output and every input gradient;
* :func:`compare_module_with_torch` does the same for a Module, parameters included;
* :func:`compare_with_reference` compares the output with an independent NumPy
  forward, for when torch is not installed.

The reports use the same rule and columns as the finite-difference checks
(see :mod:`gradcheck.report`), with tolerances for agreement between two
exact implementations (float64: 1e-10 relative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from numpy_attention.optional import import_torch
from numpy_attention.validation import describe

from .check import Slot, align_gradients, callable_name, input_slots, replaying, split_forward_result
from .module_check import module_as_pair, module_output
from .report import Report, Row, compare

# (atol, rtol) by the dtype of our side; the reference always runs in float64.
REFERENCE_TOLERANCES = {
    np.dtype(np.float64): (1e-12, 1e-10),
    np.dtype(np.float32): (1e-5, 1e-4),
}


def require_torch() -> Any:
    """Import torch lazily, or raise an ImportError that says what to install."""
    return import_torch("compare_with_torch")


def torch_available() -> bool:
    try:
        require_torch()
    except ImportError:
        return False
    return True


Reference = Callable[[np.ndarray], tuple[np.ndarray, "list[np.ndarray | None] | None"]]


def run_comparison(
    title: str,
    forward: Callable,
    backward: Callable | None,
    slots: list[Slot],
    reference: Reference,
    *,
    method: str,
    labels: tuple[str, str],
    atol: float | None,
    rtol: float | None,
    seed: int,
) -> Report:
    """Ours (forward, then backward of a seeded random ``dout``) against ``reference(dout64)``.

    ``reference`` returns the output and a gradient per slot (None for a
    skipped slot), or no gradients at all (then only the outputs are compared).
    """
    out, cache = split_forward_result(forward(*[slot.array for slot in slots]))
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    dout.flags.writeable = False
    default_atol, default_rtol = REFERENCE_TOLERANCES[np.dtype(out.dtype)]
    atol = default_atol if atol is None else float(atol)
    rtol = default_rtol if rtol is None else float(rtol)
    expected_out, expected_grads = reference(dout.astype(np.float64))
    if np.shape(expected_out) != out.shape:
        raise ValueError(f"the reference output has shape {np.shape(expected_out)}; ours has {out.shape}")
    rows: list[Row] = [compare("output", out, expected_out, atol, rtol)]
    if backward is not None and expected_grads is not None:
        grads = align_gradients(backward(dout, cache), slots)
        for slot, grad, expected in zip(slots, grads, expected_grads):
            if slot.differentiable:
                rows.append(compare(f"d{slot.name}", grad, expected, atol, rtol))
    return Report(title=title, rows=rows, method=method, dtype=str(out.dtype), atol=atol, rtol=rtol, labels=labels)


def torch_reference(torch_forward: Callable, slots: Sequence[Slot]) -> Reference:
    """Run ``torch_forward`` on float64 tensors of the slots' values and backpropagate ``dout``."""
    torch = require_torch()

    def reference(dout: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
        tensors = []
        for slot in slots:
            if slot.array is None:
                tensors.append(None)
            elif slot.differentiable:
                tensors.append(torch.tensor(slot.array, dtype=torch.float64, requires_grad=True))
            else:
                tensors.append(torch.as_tensor(np.array(slot.array)))
        result = torch_forward(*tensors)
        out = result[0] if isinstance(result, (tuple, list)) else result
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"torch_forward must return a torch.Tensor (or a tuple starting with one); got {describe(out)}"
            )
        if tuple(out.shape) != dout.shape:
            raise ValueError(f"torch_forward returned shape {tuple(out.shape)}; ours is {dout.shape}")
        out.backward(torch.tensor(dout, dtype=out.dtype))
        grads = [
            None if not slot.differentiable
            else (t.grad.numpy() if t.grad is not None else np.zeros(slot.shape))  # an unused input: zero
            for slot, t in zip(slots, tensors)
        ]
        return out.detach().numpy(), grads

    return reference


def _torch_method() -> str:
    return f"torch {require_torch().__version__} autograd, float64"


def compare_with_torch(
    forward: Callable,
    backward: Callable,
    torch_forward: Callable,
    inputs: Sequence[Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Report:
    """Compare a functional pair with torch autograd: the output and every input gradient.

    ``torch_forward`` takes the same inputs as torch tensors (float inputs as
    float64 tensors with ``requires_grad``, integer and bool inputs as they are)
    and returns the output tensor, e.g.
    ``lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)``.
    Rows: ``output``, then ``d<name>`` per float input; numpy on the left, torch on the right.
    """
    slots = input_slots(forward, inputs, names)
    reference = torch_reference(torch_forward, slots)
    with replaying(forward):
        return run_comparison(f"compare_with_torch({callable_name(forward)})", forward, backward, slots, reference,
                              method=_torch_method(), labels=("numpy", "torch"), atol=atol, rtol=rtol, seed=seed)


def compare_module_with_torch(
    module: Any,
    torch_forward: Callable,
    *inputs: Any,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
    **forward_kwargs: Any,
) -> Report:
    """Compare a Module with torch autograd: output, input gradients and every parameter gradient.

    ``torch_forward(params, *inputs)`` gets ``params``, a dict of float64
    tensors keyed like ``module.params``, and the inputs as tensors, e.g. for
    ``Linear``: ``lambda p, x: torch.nn.functional.linear(x, p["weight"], p["bias"])``.
    The module is left as it was found.
    """
    with module_as_pair(module, inputs, names, forward_kwargs) as (pair, slots, _):
        num_inputs, param_names = len(pair.input_slots), pair.param_names

        def torch_function(*tensors: Any) -> Any:
            return torch_forward(dict(zip(param_names, tensors[num_inputs:])), *tensors[:num_inputs])

        return run_comparison(f"compare_module_with_torch({type(module).__name__})", pair.forward, pair.backward,
                              slots, torch_reference(torch_function, slots), method=_torch_method(),
                              labels=("numpy", "torch"), atol=atol, rtol=rtol, seed=seed)


def compare_with_reference(
    forward: Callable,
    reference_forward: Callable,
    inputs: Sequence[Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    names: Sequence[str] | None = None,
    label: str = "reference",
) -> Report:
    """Compare ``forward(*inputs)[0]`` with an independent NumPy ``reference_forward(*inputs)`` (float64 copies).

    Output only: this is how a forward bug is found without torch.
    """
    slots = input_slots(forward, inputs, names)

    def reference(dout: np.ndarray) -> tuple[np.ndarray, None]:
        values = [s.array.astype(np.float64) if s.differentiable else s.array for s in slots]
        return module_output(reference_forward(*values), "reference_forward"), None

    with replaying(forward):
        return run_comparison(f"compare_with_reference({callable_name(forward)})", forward, None, slots, reference,
                              method="NumPy reference forward, float64", labels=("numpy", label),
                              atol=atol, rtol=rtol, seed=0)

"""Verification of hand-written backward passes: finite differences, and PyTorch when installed.

    import gradcheck
    report = gradcheck.check(forward, backward, (x, w))   # a functional pair
    report = gradcheck.check_module(layer, x)             # a Module: inputs and every parameter
    print(report); assert report.passed
    report = gradcheck.compare_with_torch(forward, backward, torch_function, (x, w))  # when torch is installed

``python -m gradcheck`` runs the fixed suite over every op and module of numpy_attention.
Importing this package never imports torch.
"""

from .check import DEFAULT_TOLERANCES, FAST_DIRECTIONS, Tolerance, check
from .module_check import check_module
from .numeric import numerical_gradients
from .reference import compare_module_with_torch, compare_with_reference, compare_with_torch
from .report import Report, Row

__all__ = [
    "DEFAULT_TOLERANCES",
    "FAST_DIRECTIONS",
    "Report",
    "Row",
    "Tolerance",
    "check",
    "check_module",
    "compare_module_with_torch",
    "compare_with_reference",
    "compare_with_torch",
    "numerical_gradients",
]

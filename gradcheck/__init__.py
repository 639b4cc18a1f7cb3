"""Verification of hand-written backward passes: finite differences, and PyTorch when installed.

    import gradcheck
    report = gradcheck.check(forward, backward, (x, w))   # a functional pair
    report = gradcheck.check_module(layer, x)             # a Module: inputs and every parameter
    print(report); assert report.passed

``python -m gradcheck`` runs the fixed suite over every op and module of numpy_attention.
Importing this package never imports torch.
"""

from .check import DEFAULT_TOLERANCES, FAST_DIRECTIONS, Tolerance, check
from .module_check import check_module
from .numeric import numerical_gradients
from .report import Report, Row

__all__ = [
    "DEFAULT_TOLERANCES",
    "FAST_DIRECTIONS",
    "Report",
    "Row",
    "Tolerance",
    "check",
    "check_module",
    "numerical_gradients",
]

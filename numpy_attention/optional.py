"""The optional dependencies, imported only when a feature needs them, with one install hint each.

Importing numpy_attention or gradcheck never imports torch or matplotlib.
"""

from __future__ import annotations

from typing import Any

# The one install hint for torch, shown wherever torch is missing (errors, skips, examples, README).
TORCH_HINT = (
    "a CPU build of torch is enough: install one first (e.g. `pip install torch==2.13.0` where a CPU "
    "wheel is available, or from PyTorch's CPU index); `pip install 'numpy_attention[torch]'` pulls "
    "torch's default build, which is CUDA on Linux (several GB)"
)


def import_torch(feature: str) -> Any:
    """``torch``, or an ImportError that says which feature needs it and how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"{feature} needs PyTorch, which is not installed: {TORCH_HINT}") from err
    return torch

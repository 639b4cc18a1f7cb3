"""The optional dependencies, imported only when a feature needs them, with one install hint each.

Importing numpy_attention or gradcheck never imports torch or matplotlib.
"""

from __future__ import annotations

from typing import Any

# A CPU build of torch is all the comparisons need; torch's default build on Linux is a CUDA one of several GB.
TORCH_HINT = "pip install torch==2.13.0 (a CPU build is enough)"


def import_torch(feature: str) -> Any:
    """``torch``, or an ImportError that says which feature needs it and how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"{feature} needs PyTorch, which is not installed: {TORCH_HINT}") from err
    return torch

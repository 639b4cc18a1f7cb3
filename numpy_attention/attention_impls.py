"""The attention implementations by name: what ``impl=`` means in the modules.

    "dense"            kernels: fast, stores the weights P (the default)
    "flash"            kernels: tiled, memory linear in L and T, no weights returned
    "textbook"         functional: the plain pair, one line per equation
    "textbook-flash"   functional: the plain tiled pair (loops over query and key blocks)

Each maps to a (forward, backward) pair with the signatures of
:func:`numpy_attention.functional.attention_forward` (the flash pairs also take
``block_size``). The kernels equal their textbook pairs to 1e-12 (float64).
"""

from __future__ import annotations

from typing import Callable

from . import functional, kernels

ATTENTION_IMPLS: dict[str, tuple[Callable, Callable]] = {
    "dense": (kernels.attention_forward, kernels.attention_backward),
    "flash": (kernels.flash_attention_forward, kernels.flash_attention_backward),
    "textbook": (functional.attention_forward, functional.attention_backward),
    "textbook-flash": (functional.flash_attention_forward, functional.flash_attention_backward),
}
DEFAULT_IMPL = "dense"
# The tiled pairs never form P: a module asked for the weights runs the dense pair of the same kind
# (and of any other registered pair, the default).
WEIGHTS_IMPL = {"dense": "dense", "flash": "dense", "textbook": "textbook", "textbook-flash": "textbook"}

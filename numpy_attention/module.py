"""The ``Module`` base: parameters and their gradients in two dicts, no autograd.

A module's ``forward`` calls functional pairs and keeps their caches; its
``backward`` calls the matching backwards, accumulates parameter gradients
into ``grads`` and returns the input gradients.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from ._validation import FLOAT_DTYPES, describe

PathLike = Union[str, "os.PathLike[str]"]


def check_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name} must be np.float32 or np.float64; got {dtype!r}") from err
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be np.float32 or np.float64; got {dtype}")
    return dtype


class Module:
    """Base class: ``params`` and ``grads`` share keys; ``backward`` accumulates into ``grads``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self._cache: Any = None

    def add_param(self, name: str, value: np.ndarray) -> None:
        """Register a parameter and its zero gradient."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> Any:
        raise NotImplementedError

    def saved_cache(self) -> Any:
        """The cache of the last forward; backward before forward is an error."""
        if self._cache is None:
            raise ValueError(
                f"{type(self).__name__}.backward() was called before forward(): "
                "there is no cached forward pass to differentiate"
            )
        return self._cache

    def accumulate(self, name: str, grad: np.ndarray) -> None:
        self.grads[name] += grad

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be a bool; got {describe(mode)}")
        self.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, keyed by name."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Copy parameters in. Everything is checked before anything is written.

        Raises ValueError on missing or extra keys, wrong shapes, or NaN/inf
        values; TypeError on non-float values. The parameters are unchanged
        when anything is rejected.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array; got {describe(state_dict)}")
        missing = sorted(set(self.params) - set(state_dict))
        extra = sorted(set(state_dict) - set(self.params))
        if missing or extra:
            raise ValueError(
                f"state_dict keys do not match {type(self).__name__}'s parameters: "
                f"missing {missing}, unexpected {extra}; expected {sorted(self.params)}"
            )
        checked = {}
        for name, current in self.params.items():
            value = state_dict[name]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"state_dict[{name!r}] must be a NumPy array; got {describe(value)}")
            if value.dtype.kind not in "fiu":
                raise TypeError(
                    f"state_dict[{name!r}] must have a float dtype ({current.dtype}); got dtype {value.dtype}"
                )
            if value.shape != current.shape:
                raise ValueError(
                    f"state_dict[{name!r}] must have shape {current.shape}; got {value.shape}"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"state_dict[{name!r}] contains NaN or inf; parameters must be finite")
            checked[name] = value
        for name, value in checked.items():
            np.copyto(self.params[name], value, casting="unsafe")

    def save(self, path: PathLike) -> None:
        """Write the parameters to an ``.npz`` file (no pickle)."""
        np.savez(path, **self.state_dict())

    def load(self, path: PathLike) -> None:
        """Read parameters written by :meth:`save`; a corrupt or foreign file is a ValueError."""
        try:
            archive = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"path {os.fspath(path)!r} is not a readable .npz parameter file: {err}") from err
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(
                f"path {os.fspath(path)!r} holds a single array; expected an .npz archive written by save()"
            )
        try:
            with archive:
                state = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise ValueError(f"path {os.fspath(path)!r} is not a readable .npz parameter file: {err}") from err
        self.load_state_dict(state)

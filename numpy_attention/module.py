"""The ``Module`` base: parameters and their gradients in two dicts, no autograd.

A module's ``forward`` calls functional pairs and keeps their caches; its
``backward`` calls the matching backwards, accumulates parameter gradients
into ``grads`` and returns the input gradients.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, Union

import numpy as np

from .validation import check_float_dtype, check_path, check_state_dict, describe

__all__ = ["Module", "check_float_dtype"]

PathLike = Union[str, "os.PathLike[str]"]


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

        Raises ValueError on missing or extra keys, wrong shapes, or values that
        are NaN/inf in the parameter's dtype; TypeError on non-array or
        non-real values. The parameters are unchanged when anything is rejected.
        """
        checked = check_state_dict(state_dict, self.params, type(self).__name__)
        for name, value in checked.items():
            np.copyto(self.params[name], value)

    def save(self, path: PathLike | BinaryIO) -> None:
        """Write the parameters to an ``.npz`` archive at exactly ``path`` (no pickle, no added suffix)."""
        check_path(path)
        if isinstance(path, (str, os.PathLike)):
            with open(path, "wb") as file:
                np.savez(file, **self.state_dict())
        else:
            np.savez(path, **self.state_dict())

    def load(self, path: PathLike | BinaryIO) -> None:
        """Read parameters written by :meth:`save`, with ``allow_pickle=False``.

        A file that cannot be opened raises what ``open`` raises (FileNotFoundError);
        anything wrong with its content (not an ``.npz``, truncated, corrupt,
        pickled objects, other keys, shapes or dtypes) is a ValueError naming
        the path. The parameters are unchanged unless the whole file is valid.
        """
        where = check_path(path)
        problem = f"path {where} is not a valid {type(self).__name__} parameter file"
        with open(path, "rb") if isinstance(path, (str, os.PathLike)) else contextlib.nullcontext(path) as file:
            try:
                state = read_npz(file)
            # A damaged archive can fail anywhere in zipfile, zlib or the .npy reader (BadZipFile,
            # zlib.error, EOFError, NotImplementedError for a garbled version field, MemoryError
            # for a garbled shape, ...): to the caller every one of them is a bad file.
            except Exception as err:
                raise ValueError(f"{problem}: {type(err).__name__}: {err}") from err
        try:
            self.load_state_dict(state)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{problem}: {err}") from err


def read_npz(file: BinaryIO) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read without unpickling anything."""
    archive = np.load(file, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError("it holds a single array; expected an .npz archive written by save()")
    with archive:
        return {name: archive[name] for name in archive.files}

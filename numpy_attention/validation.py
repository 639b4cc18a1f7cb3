"""One validation layer for every public entry point (public: use it in your own layers too).

Every rejection is a ``ValueError`` (bad value, shape or option) or a
``TypeError`` (wrong type or dtype) whose message names the argument, what
was received and what was expected. Nothing here modifies its input.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(x: Any) -> str:
    """A short description of ``x`` for error messages: shape and dtype for arrays."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}" if np.isscalar(x) or x is None else type(x).__name__


def as_float_array(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Return ``x`` as a float32/float64 array without copying when it already is one.

    Integer arrays become float64 (or ``dtype`` when given), so that
    ``np.array([[1, 0, 1, 0]])`` just works. Bool, complex, object and string
    arrays are rejected: they are never a differentiable input. When ``dtype``
    is given, float input must already have it (as torch refuses mixed dtypes).
    """
    if isinstance(x, np.ndarray):
        array = x
    elif isinstance(x, (list, tuple, numbers.Number)) and not isinstance(x, bool):
        try:
            array = np.asarray(x)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array; got a ragged {describe(x)}") from err
    else:
        raise TypeError(f"{name} must be a NumPy array of float32 or float64; got {describe(x)}")
    kind = array.dtype.kind
    if kind in "iu":
        return array.astype(dtype if dtype is not None else np.float64)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64 (integers are converted to float64); "
            f"got dtype {array.dtype}"
        )
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}; got dtype {array.dtype}")
    return array


def check_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """A module's parameter dtype: float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{name} must be np.float32 or np.float64; got {dtype!r}") from err
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be np.float32 or np.float64; got {dtype}")
    return dtype


def same_dtype(arrays: Sequence[np.ndarray], names: Sequence[str]) -> np.dtype:
    """The common dtype of ``arrays``; mixed float32/float64 is an error, as in torch."""
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        got = ", ".join(f"{n}: {a.dtype}" for n, a in zip(names, arrays))
        raise TypeError(f"{', '.join(names)} must share one dtype; got {got}")
    return arrays[0].dtype


def check_ndim(x: np.ndarray, name: str, allowed: Sequence[int] | None = None, min_ndim: int = 0) -> None:
    if allowed is not None and x.ndim not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must be {expected}-dimensional; got shape {x.shape}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions; got shape {x.shape}")


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """An int axis (not a bool) in [-ndim, ndim), returned non-negative."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {describe(axis)}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim}) for an array with {ndim} dimensions; got {axis}")
    return int(axis) % ndim


def check_cache(cache: Any, cache_type: type, forward_name: str) -> None:
    """A backward takes the cache its own forward returned (catches swapped or foreign caches)."""
    if not isinstance(cache, cache_type):
        raise TypeError(f"cache must be the {cache_type.__name__} returned by {forward_name}; got {describe(cache)}")


def check_dout(dout: Any, expected_shape: tuple, dtype: np.dtype, name: str = "dout") -> np.ndarray:
    """The upstream gradient must have the forward output's exact shape and dtype."""
    dout = as_float_array(dout, name, dtype=dtype)
    if dout.shape != tuple(expected_shape):
        raise ValueError(
            f"{name} must have the forward output's shape {tuple(expected_shape)}; got {dout.shape}"
        )
    return dout


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {describe(value)}")
    return bool(value)


def check_real(value: Any, name: str, allow_none: bool = False) -> float | None:
    """A finite real number (not a bool); ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(value)


def check_probability(value: Any, name: str) -> float:
    """A dropout probability in [0, 1): p = 1 would divide by zero in the 1/(1-p) rescale."""
    p = check_real(value, name)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return p


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int; got {describe(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def check_index(value: Any, name: str, size: int) -> int:
    """An int in [-size, size), returned in [0, size): a Python-style index into ``size`` items."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {describe(value)}")
    if not -size <= value < size:
        raise ValueError(f"{name} must be in [{-size}, {size}); got {value!r}")
    return int(value) % size


def as_index_array(x: Any, name: str, size: int, ignore_index: int | None = None) -> np.ndarray:
    """An integer array whose entries index ``size`` items: each in [0, size), or ``ignore_index``.

    Token ids and class targets are labels, not numbers to differentiate:
    float and bool arrays are rejected rather than rounded or cast, and an
    out-of-range entry is a ValueError naming it (not an IndexError from NumPy).
    """
    if isinstance(x, (list, tuple)) or (isinstance(x, numbers.Integral) and not isinstance(x, bool)):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of integer indices; got {describe(x)}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype (indices); got dtype {x.dtype}")
    used = x if ignore_index is None else x[x != ignore_index]
    outside = used[(used < 0) | (used >= size)]
    if outside.size:
        allowed = f"[0, {size})" + ("" if ignore_index is None else f" or ignore_index = {ignore_index}")
        raise ValueError(
            f"{name} must hold indices in {allowed}; got {outside.flat[0]} (in {name} of shape {x.shape})"
        )
    return x


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def as_generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """``None`` -> a fresh generator, an int -> a seeded one, a Generator as is."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"{name} must be a numpy.random.Generator, an int seed or None; got {describe(rng)}")


def broadcast_batch(shapes: Sequence[tuple], names: Sequence[str]) -> tuple:
    """Broadcast leading batch shapes as torch.matmul does, naming the culprits on failure."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        got = ", ".join(f"{n}: {s}" for n, s in zip(names, shapes))
        raise ValueError(f"batch dimensions of {', '.join(names)} do not broadcast; got {got}") from None


def as_mask_array(mask: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """A boolean mask as is, or a float mask cast to ``dtype``; anything else is a TypeError."""
    if not isinstance(mask, np.ndarray):
        if isinstance(mask, (list, tuple)):
            mask = np.asarray(mask)
        else:
            raise TypeError(f"{name} must be a boolean or float NumPy array; got {describe(mask)}")
    if mask.dtype == np.bool_:
        pass
    elif mask.dtype.kind == "f":
        # A float64 mask of -1e300 (or finfo.min) means "blocked": in float32 that is -inf, said quietly.
        with np.errstate(over="ignore"):
            mask = mask.astype(dtype, copy=False)
    else:
        raise TypeError(f"{name} must have dtype bool or a float dtype; got dtype {mask.dtype}")
    return mask


def as_mask(mask: Any, name: str, target_shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A boolean mask, or a float mask cast to ``dtype``, broadcastable to ``target_shape``.

    The mask may not enlarge the result: it has to broadcast *to* ``target_shape``.
    """
    mask = as_mask_array(mask, name, dtype)
    try:
        fits = np.broadcast_shapes(mask.shape, target_shape) == tuple(target_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{name} of shape {mask.shape} does not broadcast to the attention shape {tuple(target_shape)}"
        )
    return mask


def check_state_dict(state_dict: Any, params: Mapping[str, np.ndarray], owner: str) -> dict[str, np.ndarray]:
    """Validate a whole state dict against ``params`` before anything is written.

    Keys must match exactly; each value must be a real NumPy array of the
    parameter's shape, finite once cast to the parameter's dtype (a float64
    1e300 is inf in float32). Returns the values cast to the parameters' dtypes.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> array; got {describe(state_dict)}")
    missing = sorted(set(params) - set(state_dict))
    extra = sorted(set(state_dict) - set(params), key=str)
    if missing or extra:
        raise ValueError(
            f"state_dict keys do not match {owner}'s parameters: "
            f"missing {missing}, unexpected {extra}; expected {sorted(params)}"
        )
    checked = {}
    for name, current in params.items():
        value = state_dict[name]
        key = f"state_dict[{name!r}]"
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{key} must be a NumPy array; got {describe(value)}")
        if value.dtype.kind not in "fiu":
            raise TypeError(f"{key} must have a real dtype (the parameter is {current.dtype}); got dtype {value.dtype}")
        if value.shape != current.shape:
            raise ValueError(f"{key} must have shape {current.shape}; got {value.shape}")
        with np.errstate(over="ignore"):
            value = value.astype(current.dtype, copy=False)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{key} contains NaN or inf (as {current.dtype}); parameters must be finite")
        checked[name] = value
    return checked


def check_path(path: Any, name: str = "path") -> str:
    """A file name (str or os.PathLike) or a binary file object; returns how to name it in messages."""
    if isinstance(path, (str, os.PathLike)):
        return repr(os.fspath(path))
    if hasattr(path, "read") or hasattr(path, "write"):
        return repr(getattr(path, "name", type(path).__name__))
    raise TypeError(f"{name} must be a str, an os.PathLike or a binary file object; got {describe(path)}")


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``.

    This is the backward of broadcasting: an input used by many batch entries
    receives the sum of their gradients.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# --- positions and the options of today's attention (RoPE, score modifications, masks) -------------

def as_positions(x: Any, name: str, length: int | None = None) -> np.ndarray:
    """Integer token positions, one per row: a 1-D integer array of ``length`` entries (any length
    when None), of any sign.

    Positions are labels, not numbers to differentiate: float and bool arrays
    are rejected rather than rounded. Returned as int64 (a copy only when the
    dtype differs).
    """
    if isinstance(x, (list, tuple, range)):
        x = np.asarray(x, dtype=np.int64) if len(x) == 0 else np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a 1-D NumPy array of integer positions; got {describe(x)}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype (positions); got dtype {x.dtype}")
    if length is None and x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, one position each; got shape {x.shape}")
    if length is not None and x.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), one position each; got shape {x.shape}")
    if x.dtype.kind == "u" and x.size and x.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64; got {x.max()}")
    return x.astype(np.int64, copy=False)


def check_window(window: Any, name: str = "window") -> tuple[int | None, int | None] | None:
    """``None`` or a pair ``(left, right)`` of non-negative ints, either of which may be None (unbounded)."""
    if window is None:
        return None
    expected = "None or a pair (left, right) of non-negative ints or None, e.g. (4095, 0)"
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise TypeError(f"{name} must be {expected}; got {describe(window)}")
    sides = []
    for side, value in zip(("left", "right"), window):
        if value is None:
            sides.append(None)
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}[{side}] must be a non-negative int or None ({name} is {expected}); "
                            f"got {describe(value)}")
        if value < 0:
            raise ValueError(f"{name}[{side}] must be a non-negative int or None; got {value!r}")
        sides.append(int(value))
    return sides[0], sides[1]


def check_softcap(softcap: Any, name: str = "softcap") -> float | None:
    """``None`` or a positive finite real: the cap c of ``c * tanh(s / c)``."""
    cap = check_real(softcap, name, allow_none=True)
    if cap is not None and cap <= 0:
        raise ValueError(f"{name} must be a positive real number (the cap c of c * tanh(s / c)); got {softcap!r}")
    return cap


def as_head_vector(x: Any, name: str, num_heads: int, dtype: np.dtype, *, cast: bool = False) -> np.ndarray:
    """A finite 1-D float array of ``num_heads`` entries (one per query head) in ``dtype``.

    ``cast=True`` converts a constant (ALiBi's slopes) to ``dtype``; without it a
    learnable input (the sinks) must already have it, as torch refuses mixed dtypes.
    """
    x = as_float_array(x, name)
    if x.shape != (num_heads,):
        raise ValueError(f"{name} must have shape ({num_heads},), one value per query head; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; got {x}")
    if cast:
        return x.astype(dtype, copy=False)
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have the scores' dtype {np.dtype(dtype)}; got dtype {x.dtype}")
    return x


def check_query_offset(value: Any, name: str = "query_offset") -> int:
    """An int (any sign): query i sits at key position i + query_offset."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int (query i sits at key position i + {name}); got {describe(value)}")
    return int(value)

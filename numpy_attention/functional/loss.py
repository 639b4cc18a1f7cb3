"""Softmax cross-entropy loss, forward and backward, as ``torch.nn.functional.cross_entropy``.

See docs/derivations.md, section "Cross-entropy loss".
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from ..validation import as_float_array, as_index_array, check_cache, check_choice, check_dout, describe

REDUCTIONS = ("mean", "sum", "none")


class CrossEntropyCache(NamedTuple):
    """What the cross-entropy backward needs.

    ``probs`` is the softmax of the logits with the class axis moved last,
    shape (*target.shape, C); ``kept`` marks the targets that are not
    ``ignore_index``; ``num_kept`` is the divisor of the mean.
    """

    probs: np.ndarray
    target: np.ndarray
    kept: np.ndarray
    num_kept: int
    reduction: str


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, shifted by the maximum so that nothing overflows."""
    # A row holding +inf, or only -inf, has no finite maximum: it gives NaN, as torch does, without a warning.
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _classes_last(logits: np.ndarray) -> np.ndarray:
    """torch puts the classes on axis 1 of (N, C, d1, ...); move them last: (N, d1, ..., C)."""
    return logits if logits.ndim <= 2 else np.moveaxis(logits, 1, -1)


def _classes_back(grad: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_classes_last`."""
    return grad if grad.ndim <= 2 else np.moveaxis(grad, -1, 1)


def cross_entropy_forward(
    logits: np.ndarray, target: np.ndarray, ignore_index: int = -100, reduction: str = "mean"
) -> tuple[np.ndarray, CrossEntropyCache]:
    """Softmax cross-entropy between logits and integer class targets.

    Parameters
    ----------
    logits : ndarray (C,), (N, C) or (N, C, d1, ...), float32 or float64
        Unnormalised scores; the classes are on axis 1 (axis 0 for unbatched input), as in torch.
    target : integer ndarray (), (N,) or (N, d1, ...)
        Class indices in [0, C), or ``ignore_index``.
    ignore_index : int
        Targets equal to it add no loss and get no gradient; the mean divides by the others.
    reduction : "mean", "sum" or "none"

    Returns
    -------
    loss : 0-d ndarray, or ndarray of ``target``'s shape for ``reduction="none"``
        ``-log softmax(logits)[target]`` per element, reduced. As in torch, the mean
        over targets that are all ignored is NaN (0 / 0).
    cache : CrossEntropyCache
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have a class dimension: (C,), (N, C) or (N, C, d1, ...); got a scalar")
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int; got {describe(ignore_index)}")
    reduction = check_choice(reduction, "reduction", REDUCTIONS)
    num_classes = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
    target = as_index_array(target, "target", num_classes, ignore_index)
    expected_target_shape = logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ()
    if target.shape != expected_target_shape:
        raise ValueError(
            f"target must have shape {expected_target_shape} (logits {logits.shape} without its "
            f"class axis); got {target.shape}"
        )

    log_probs = log_softmax(_classes_last(logits), axis=-1)
    kept = target != ignore_index
    safe_target = np.where(kept, target, 0)  # any valid class: ignored entries are zeroed below
    picked = np.take_along_axis(log_probs, safe_target[..., None], axis=-1)[..., 0]
    losses = np.where(kept, -picked, 0).astype(logits.dtype, copy=False)
    num_kept = int(kept.sum())
    if reduction == "none":
        loss = losses
    elif reduction == "sum":
        loss = losses.sum()
    elif num_kept == 0:
        loss = np.array(np.nan, dtype=logits.dtype)
    else:
        loss = losses.sum() / np.asarray(num_kept, dtype=logits.dtype)
    cache = CrossEntropyCache(np.exp(log_probs), safe_target, kept, num_kept, reduction)
    return np.asarray(loss, dtype=logits.dtype), cache


def cross_entropy_backward(dout: Any, cache: CrossEntropyCache) -> np.ndarray:
    """Gradient of the cross-entropy with respect to the logits (targets are not differentiable).

    With ``p = softmax(logits)`` over the classes and ``e_t`` the one-hot target,
    each element's loss ``-log p[t]`` has the gradient ``p - e_t`` (C,), weighed
    by ``w[n] = dloss / dloss_n``: ``dout / num_kept`` for the mean, ``dout``
    for the sum, ``dout[n]`` for ``"none"``, and 0 for an ignored target::

        dlogits[n] = w[n] * (p[n] - e_t[n])        (N, C), classes on axis 1 as in the logits

    See docs/derivations.md, section "Cross-entropy loss".
    """
    check_cache(cache, CrossEntropyCache, "cross_entropy_forward")
    probs, target, kept, num_kept, reduction = cache
    dtype = probs.dtype
    if isinstance(dout, (int, float)) and not isinstance(dout, (bool, np.generic)):
        dout = np.asarray(dout, dtype=dtype)  # a Python number has no dtype of its own to check
    loss_shape = target.shape if reduction == "none" else ()
    dout = check_dout(dout, loss_shape, dtype)
    if reduction == "none":
        dlosses = dout
    elif reduction == "sum":
        dlosses = np.broadcast_to(dout, target.shape)
    else:
        dlosses = np.broadcast_to(dout / max(num_kept, 1), target.shape)
    dlosses = np.where(kept, dlosses, 0).astype(dtype, copy=False)
    one_hot = np.arange(probs.shape[-1]) == target[..., None]
    return _classes_back((probs - one_hot) * dlosses[..., None])

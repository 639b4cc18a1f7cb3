"""The reshapes and key padding of multi-head attention, each with its backward.

``split_heads`` and ``merge_heads`` move features between one wide axis and a
head axis. They only reorder elements, so each is the other's backward: the
gradient of a split is the merge of the upstream gradient, and vice versa.

``append_keys_forward`` appends torch's ``add_bias_kv`` row (a learned key or
value shared by every batch entry) and ``add_zero_attn`` row (zeros) after the
projected keys or values.

See docs/derivations.md, sections "Multi-head attention" and
"add_bias_kv and add_zero_attn".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..validation import check_dout


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """(N, L, H*D) -> (N, H, L, D): feature block h becomes head h. Its backward is :func:`merge_heads`."""
    batch, length, features = x.shape
    return x.reshape(batch, length, num_heads, features // num_heads).swapaxes(1, 2)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(N, H, L, D) -> (N, L, H*D), the inverse of :func:`split_heads` and its backward."""
    batch, num_heads, length, head_dim = x.shape
    return x.swapaxes(1, 2).reshape(batch, length, num_heads * head_dim)


class AppendKeysCache(NamedTuple):
    """What the backward needs: the original key length, whether a bias row came first, the output's shape and dtype."""

    length: int
    has_bias: bool
    out_shape: tuple
    dtype: np.dtype


def append_keys_forward(
    x: np.ndarray, bias: np.ndarray | None = None, add_zero: bool = False
) -> tuple[np.ndarray, AppendKeysCache]:
    """Append a learned row and/or a zero row to projected keys or values, as torch does.

    Parameters
    ----------
    x : ndarray (N, S, F)
        Projected keys (or values), batch first.
    bias : ndarray (1, 1, F), optional
        torch's ``bias_k`` (or ``bias_v``): one extra key shared by the whole batch.
    add_zero : bool
        torch's ``add_zero_attn``: one more key (value) of zeros, after the bias row.

    Returns
    -------
    out : ndarray (N, S + [bias is not None] + [add_zero], F)
    cache : AppendKeysCache
    """
    batch, length, features = x.shape
    rows = [x]
    if bias is not None:
        rows.append(np.broadcast_to(bias, (batch, 1, features)))
    if add_zero:
        rows.append(np.zeros((batch, 1, features), dtype=x.dtype))
    out = np.concatenate(rows, axis=1) if len(rows) > 1 else x
    return out, AppendKeysCache(length, bias is not None, out.shape, x.dtype)


def append_keys_backward(dout: np.ndarray, cache: AppendKeysCache) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients of the appended rows: slice them off.

    With ``out = concat(x, broadcast(bias), 0)`` along the key axis::

        dx    = dout[:, :S]                        (N, S, F)
        dbias = sum_n dout[n, S]                   (1, 1, F)   the bias row serves every batch entry
        (the zero row is a constant: its gradient is dropped)

    See docs/derivations.md, section "add_bias_kv and add_zero_attn".
    """
    length = cache.length
    dout = check_dout(dout, cache.out_shape, cache.dtype)
    dbias = dout[:, length : length + 1].sum(axis=0, keepdims=True) if cache.has_bias else None
    return dout[:, :length], dbias

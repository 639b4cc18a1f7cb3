"""torch.nn.MultiheadAttention's masks, turned into one mask for the attention pair.

torch's MultiheadAttention takes two masks with the opposite boolean
convention to ``scaled_dot_product_attention`` (True = NOT allowed):

- ``key_padding_mask`` (N, S), or (S,) for unbatched input: keys to ignore per batch entry;
- ``attn_mask`` (L, S) for every batch entry and head, or (N * num_heads, L, S) per
  entry and head ((num_heads, L, S) for unbatched input).

Float masks are added to the scores. torch turns boolean masks into float
(0 / -inf), pads both with a column of 0 for each key appended by
``add_bias_kv`` / ``add_zero_attn`` (those keys stay attendable) and adds
them. :func:`merge_masks` computes the same mask; when both masks are boolean
it stays boolean (allowed = not attn_mask and not key_padding_mask), which
gives bit-identical scores without -inf arithmetic.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..functional.attention import causal_mask
from ..validation import as_mask_array, check_bool


class MaskShape(NamedTuple):
    """The sizes the masks must agree with; ``keys`` counts the user's keys only."""

    batch: int
    heads: int
    queries: int
    keys: int
    appended: int  # keys appended by add_bias_kv / add_zero_attn
    batched: bool


def _check_attn_mask(attn_mask: Any, shape: MaskShape, dtype: np.dtype) -> np.ndarray:
    """(L, S) -> (1, 1, L, S); (N * H, L, S) -> (N, H, L, S). torch's shapes, exactly."""
    attn_mask = as_mask_array(attn_mask, "attn_mask", dtype)
    batch, heads, queries, keys = shape.batch, shape.heads, shape.queries, shape.keys
    per_head = (batch * heads, queries, keys) if shape.batched else (heads, queries, keys)
    if attn_mask.shape == (queries, keys):
        return attn_mask[None, None]
    if attn_mask.shape == per_head:
        return attn_mask.reshape(batch, heads, queries, keys)
    per_head_name = "(N * num_heads, L, S)" if shape.batched else "(num_heads, L, S)"
    raise ValueError(
        f"attn_mask must have shape (L, S) = {(queries, keys)} or {per_head_name} = {per_head}; "
        f"got shape {attn_mask.shape}"
    )


def _check_key_padding_mask(key_padding_mask: Any, shape: MaskShape, dtype: np.dtype) -> np.ndarray:
    """(N, S) -> (N, 1, 1, S); unbatched (S,) -> (1, 1, 1, S)."""
    key_padding_mask = as_mask_array(key_padding_mask, "key_padding_mask", dtype)
    expected = (shape.batch, shape.keys) if shape.batched else (shape.keys,)
    if key_padding_mask.shape != expected:
        layout = "(N, S)" if shape.batched else "(S,) for unbatched input"
        raise ValueError(f"key_padding_mask must have shape {layout} = {expected}; got shape {key_padding_mask.shape}")
    return key_padding_mask.reshape(-1, 1, 1, shape.keys)


def _as_additive(allowed: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A boolean allowed-mask as the float mask torch would add: 0 where allowed, -inf elsewhere."""
    return np.where(allowed, 0.0, -np.inf).astype(dtype)


def merge_masks(
    attn_mask: Any,
    key_padding_mask: Any,
    is_causal: Any,
    shape: MaskShape,
    dtype: np.dtype,
) -> np.ndarray | None:
    """torch MultiheadAttention's ``attn_mask``, ``key_padding_mask`` and ``is_causal`` as one mask.

    Parameters
    ----------
    attn_mask, key_padding_mask : ndarray or None
        In torch's MultiheadAttention convention (boolean True = not allowed, float = added).
        When both are given they must both be boolean or both float.
    is_causal : bool
        Alone, it builds the top-left causal mask over the user's keys. With ``attn_mask``
        it is a hint that ``attn_mask`` is causal, and ``attn_mask`` is what is used
        (torch's ``need_weights=True`` path does the same).
    shape : MaskShape
    dtype : the dtype of float masks

    Returns
    -------
    mask : ndarray broadcastable to (N, H, L, S + appended), or None
        In ``scaled_dot_product_attention``'s convention (boolean True = may attend;
        float = added). The appended keys are always attendable.
    """
    is_causal = check_bool(is_causal, "is_causal")
    masks = []
    if attn_mask is not None:
        masks.append(_check_attn_mask(attn_mask, shape, dtype))
    elif is_causal:  # in torch's convention for now, like the user's masks
        masks.append(~causal_mask(shape.queries, shape.keys)[None, None])
    if key_padding_mask is not None:
        masks.append(_check_key_padding_mask(key_padding_mask, shape, dtype))
    if not masks:
        return None
    if attn_mask is not None and key_padding_mask is not None and masks[0].dtype != masks[1].dtype:
        raise TypeError(
            "key_padding_mask and attn_mask must both be boolean or both float; "
            f"got key_padding_mask of dtype {masks[1].dtype} and attn_mask of dtype {masks[0].dtype}"
        )
    # From here on, SDPA's convention (True = may attend). A causal mask met by a
    # float key_padding_mask becomes additive, as torch would make it.
    additive = any(m.dtype != np.bool_ for m in masks)
    masks = [m if m.dtype != np.bool_ else _as_additive(~m, dtype) if additive else ~m for m in masks]
    if shape.appended:
        padding = [(0, 0)] * 3 + [(0, shape.appended)]
        masks = [np.pad(m, padding, constant_values=0.0 if additive else True) for m in masks]
    merged = masks[0]
    for mask in masks[1:]:
        merged = merged + mask if additive else merged & mask
    return merged

"""``MultiHeadAttention``: torch.nn.MultiheadAttention's API over the functional pairs.

The forward, batch first, for H query heads of width D = embed_dim / H and
Hkv key/value heads (H a multiple of Hkv: grouped-query attention)::

    Q = X_q W_q^T + b_q                          (N, L, H*D)
    K = [X_k W_k^T + b_k ; bias_k ; 0]          (N, S', Hkv*D)   bias_k, 0: add_bias_kv, add_zero_attn
    V = [X_v W_v^T + b_v ; bias_v ; 0]          (N, S', Hkv*D)
    O_h = attention(Q_h, K_{h // G}, V_{h // G}, mask)    G = H / Hkv, scale 1/sqrt(D)
    Y = [O_1 ... O_H] W_o^T + b_o               (N, L, E)

See docs/derivations.md, section "Multi-head attention".
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .. import functional as F
from .. import kernels
from ..attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL, WEIGHTS_IMPL
from ..functional.dropout import dropout_factor
from ..functional.heads import AppendKeysCache, append_keys_backward, append_keys_forward, merge_heads, split_heads
from ..module import Module, check_float_dtype
from ..validation import (
    as_float_array,
    as_generator,
    check_bool,
    check_choice,
    check_dout,
    check_ndim,
    check_positive_int,
    check_probability,
)
from . import torch_interop
from .masks import MaskShape, merge_masks

PROJECTIONS = ("q_proj", "k_proj", "v_proj")


class Layout(NamedTuple):
    """How the caller's arrays are laid out; the module works batch first, (N, L, E), inside."""

    batched: bool
    batch_first: bool

    def to_internal(self, x: np.ndarray) -> np.ndarray:
        if not self.batched:
            return x[None]
        return x if self.batch_first else x.swapaxes(0, 1)

    def to_caller(self, x: np.ndarray) -> np.ndarray:
        if not self.batched:
            return x[0]
        return x if self.batch_first else x.swapaxes(0, 1)


class MultiHeadCache(NamedTuple):
    """What the backward needs: the caches of every pair, in forward order."""

    projections: tuple[F.LinearCache, F.LinearCache, F.LinearCache]
    appended: tuple[AppendKeysCache, AppendKeysCache]
    attention: Any  # the cache of the attention implementation that ran
    attention_backward: Callable
    out_proj: F.LinearCache
    layout: Layout
    self_attention: bool
    out_shape: tuple


class MultiHeadAttention(Module):
    """Multi-head attention with ``torch.nn.MultiheadAttention``'s arguments, masks and parameters.

    Parameters
    ----------
    embed_dim : int
        Width of the queries and of the output; split into ``num_heads`` heads of
        ``head_dim = embed_dim // num_heads`` features, scaled by ``1 / sqrt(head_dim)``.
    num_heads : int
    dropout : float
        Dropout on the attention probabilities, in training mode only.
    bias : bool
        Biases on the four projections.
    add_bias_kv : bool
        Append one learned key (``bias_k``) and value (``bias_v``) to every sequence.
    add_zero_attn : bool
        Append one key and value of zeros to every sequence (after ``bias_k``).
    kdim, vdim : int, optional
        Widths of the key and value inputs (default ``embed_dim``).
    batch_first : bool
        (N, L, E) inputs when True (this library's default), (L, N, E) when False
        (torch's default). Unbatched (L, E) input is accepted either way.
    num_kv_heads : int, optional
        Key/value heads (default ``num_heads``); fewer gives grouped-query attention,
        1 multi-query attention. ``k_proj`` and ``v_proj`` then output
        ``num_kv_heads * head_dim`` features.
    impl : str
        A key of ``numpy_attention.attention_impls.ATTENTION_IMPLS``: "dense" (the kernel,
        default), "flash" (the tiled kernel, linear memory), "textbook" or "textbook-flash"
        (the plain pairs). A tiled pair runs when ``need_weights=False``; ``need_weights=True``
        needs the L x S weights, so that call runs its dense counterpart, which returns them,
        as torch does (its fused kernels only run with ``need_weights=False``).
    dtype : np.float32 or np.float64
    rng : numpy.random.Generator or int, optional
        Draws the initial parameters, then the dropout masks; kept as ``self.rng``.

    Notes
    -----
    Where this module and torch differ, on purpose:

    - A query whose keys are all masked gets attention output 0, so its output
      row equals ``out_proj.bias``, and its gradients are 0, as torch's
      ``need_weights=False`` path gives; its ``need_weights=True`` path gives NaN.
    - ``is_causal=True`` alone builds the causal mask (torch requires ``attn_mask``
      too; passing both is accepted, and ``attn_mask`` is used). The keys appended
      by ``add_bias_kv`` / ``add_zero_attn`` stay attendable, as in torch's
      ``need_weights=True`` path; torch's ``need_weights=False`` path masks them for
      early queries under ``is_causal``.
    - A boolean ``key_padding_mask`` with a float ``attn_mask`` (or the reverse) is a
      TypeError; torch warns that it is deprecated.

    As in torch, with dropout the returned weights are the dropped-out, rescaled
    probabilities that multiplied the values.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        *,
        num_kv_heads: int | None = None,
        impl: str = DEFAULT_IMPL,
        dtype: Any = np.float64,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads; got embed_dim={embed_dim}, num_heads={num_heads}"
            )
        self.head_dim = embed_dim // num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else check_positive_int(num_kv_heads, "num_kv_heads")
        if num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads must be a multiple of num_kv_heads; got num_heads={num_heads}, "
                f"num_kv_heads={self.num_kv_heads}"
            )
        self.kdim = embed_dim if kdim is None else check_positive_int(kdim, "kdim")
        self.vdim = embed_dim if vdim is None else check_positive_int(vdim, "vdim")
        self.dropout = check_probability(dropout, "dropout")
        self.bias = check_bool(bias, "bias")
        self.add_bias_kv = check_bool(add_bias_kv, "add_bias_kv")
        self.add_zero_attn = check_bool(add_zero_attn, "add_zero_attn")
        self.batch_first = check_bool(batch_first, "batch_first")
        self.impl = check_choice(impl, "impl", sorted(ATTENTION_IMPLS))
        self.dtype = check_float_dtype(dtype)
        self.rng = as_generator(rng)
        self._init_params()

    @property
    def kv_features(self) -> int:
        """Width of the projected keys and values: num_kv_heads * head_dim."""
        return self.num_kv_heads * self.head_dim

    def _init_params(self) -> None:
        """torch's initialisation: xavier-uniform projections, zero biases, xavier-normal bias_k / bias_v.

        torch packs q/k/v into one (E + 2F, E) ``in_proj_weight`` when kdim == vdim ==
        embed_dim, and draws it as one matrix: bound sqrt(6 / (E + E + 2F)); otherwise
        each projection gets its own bound sqrt(6 / (fan_in + fan_out)). ``out_proj``
        keeps nn.Linear's U(-1/sqrt(E), 1/sqrt(E)) weight.
        """
        rng, dtype, embed, features = self.rng, self.dtype, self.embed_dim, self.kv_features
        out_features = (embed, features, features)
        in_features = (embed, self.kdim, self.vdim)

        def xavier_uniform(fan_out: int, fan_in: int) -> np.ndarray:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype)

        if self.kdim == self.vdim == embed:
            packed = xavier_uniform(sum(out_features), embed)
            weights = np.split(packed, np.cumsum(out_features)[:-1])
        else:
            weights = [xavier_uniform(rows, cols) for rows, cols in zip(out_features, in_features)]
        for name, weight, rows in zip(PROJECTIONS, weights, out_features):
            self.add_param(f"{name}.weight", np.ascontiguousarray(weight))
            if self.bias:
                self.add_param(f"{name}.bias", np.zeros(rows, dtype))
        bound = 1.0 / math.sqrt(embed)
        self.add_param("out_proj.weight", rng.uniform(-bound, bound, (embed, embed)).astype(dtype))
        if self.bias:
            self.add_param("out_proj.bias", np.zeros(embed, dtype))
        if self.add_bias_kv:
            # xavier_normal on a (1, 1, F) tensor: fan_in = fan_out = F, so std = 1/sqrt(F).
            for name in ("bias_k", "bias_v"):
                self.add_param(name, (rng.standard_normal((1, 1, features)) / math.sqrt(features)).astype(dtype))

    def _check_inputs(self, query: Any, key: Any, value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shapes as torch checks them, with the culprit named: (N, L, E) / (L, N, E) / (L, E)."""
        query = as_float_array(query, "query", dtype=self.dtype)
        check_ndim(query, "query", (2, 3))
        key = as_float_array(key, "key", dtype=self.dtype)
        value = as_float_array(value, "value", dtype=self.dtype)
        if not query.ndim == key.ndim == value.ndim:
            raise ValueError(
                f"query, key and value must all be 3-D (batched) or all 2-D (unbatched); "
                f"got shapes {query.shape}, {key.shape}, {value.shape}"
            )
        for name, x, width, option in (
            ("query", query, self.embed_dim, "embed_dim"),
            ("key", key, self.kdim, "kdim"),
            ("value", value, self.vdim, "vdim"),
        ):
            if x.shape[-1] != width:
                raise ValueError(f"{name} must have {option} = {width} features (last dimension); got shape {x.shape}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                f"key and value must have the same sequence length and batch size; "
                f"got key {key.shape} and value {value.shape}"
            )
        batch_axis = 0 if self.batch_first else 1
        if query.ndim == 3 and query.shape[batch_axis] != key.shape[batch_axis]:
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            raise ValueError(
                f"query and key must have the same batch size N (inputs are {layout}, batch_first="
                f"{self.batch_first}); got query {query.shape} and key {key.shape}"
            )
        return query, key, value

    def forward(
        self,
        query: np.ndarray,
        key: np.ndarray | None = None,
        value: np.ndarray | None = None,
        key_padding_mask: np.ndarray | None = None,
        need_weights: bool = True,
        attn_mask: np.ndarray | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Attend from ``query`` to ``key`` / ``value`` (to ``query`` itself when both are None).

        Parameters
        ----------
        query : ndarray (N, L, embed_dim), (L, N, embed_dim) if not batch_first, or (L, embed_dim)
        key : ndarray (N, S, kdim) (same layout as query), optional
        value : ndarray (N, S, vdim), optional
        key_padding_mask : ndarray (N, S), or (S,) unbatched, optional
            Boolean: True = ignore this key. Float: added to the scores.
        need_weights : bool
            Return the attention weights (and run a dense pair, see the class notes).
        attn_mask : ndarray (L, S) or (N * num_heads, L, S), optional
            Boolean: True = not allowed. Float: added. Same kind as ``key_padding_mask``.
        average_attn_weights : bool
            Average the returned weights over the heads.
        is_causal : bool
            Query i attends to keys j <= i (of the given keys; appended keys stay visible).

        Returns
        -------
        out : ndarray, the layout of ``query`` with embed_dim features
        weights : ndarray (N, L, S') averaged, (N, num_heads, L, S') per head, without N
            for unbatched input, or None when ``need_weights=False``. S' counts the
            appended keys.
        """
        if (key is None) != (value is None):
            raise ValueError(
                "key and value must both be given (cross-attention) or both be None (self-attention); "
                f"got key {'None' if key is None else 'given'} and value {'None' if value is None else 'given'}"
            )
        self_attention = key is None
        if self_attention:
            key = value = query
        query, key, value = self._check_inputs(query, key, value)
        need_weights = check_bool(need_weights, "need_weights")
        average_attn_weights = check_bool(average_attn_weights, "average_attn_weights")
        layout = Layout(batched=query.ndim == 3, batch_first=self.batch_first)
        inputs = [layout.to_internal(x) for x in (query, key, value)]
        batch, queries, keys = inputs[0].shape[0], inputs[0].shape[1], inputs[1].shape[1]
        appended = int(self.add_bias_kv) + int(self.add_zero_attn)
        mask = merge_masks(
            attn_mask, key_padding_mask, is_causal,
            MaskShape(batch, self.num_heads, queries, keys, appended, layout.batched), self.dtype,
        )

        projected, projection_caches = [], []
        for name, x in zip(PROJECTIONS, inputs):
            out, cache = kernels.linear_forward(x, self.params[f"{name}.weight"], self.params.get(f"{name}.bias"))
            projected.append(out)
            projection_caches.append(cache)
        q, k, v = projected
        k, key_rows = append_keys_forward(k, self.params.get("bias_k"), self.add_zero_attn)
        v, value_rows = append_keys_forward(v, self.params.get("bias_v"), self.add_zero_attn)

        attention_forward, attention_backward = ATTENTION_IMPLS[
            WEIGHTS_IMPL.get(self.impl, DEFAULT_IMPL) if need_weights else self.impl
        ]
        dropout_p = self.dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(self.head_dim)  # per head: not 1/sqrt(embed_dim)
        heads, attention_cache = attention_forward(
            split_heads(q, self.num_heads), split_heads(k, self.num_kv_heads), split_heads(v, self.num_kv_heads),
            mask, dropout_p, False, scale, rng=self.rng,
        )
        out, out_cache = kernels.linear_forward(merge_heads(heads), self.params["out_proj.weight"],
                                          self.params.get("out_proj.bias"))
        out = layout.to_caller(out)
        self._cache = MultiHeadCache(
            tuple(projection_caches), (key_rows, value_rows), attention_cache, attention_backward,
            out_cache, layout, self_attention, out.shape,
        )
        weights = self._returned_weights(attention_cache, average_attn_weights, layout) if need_weights else None
        return out, weights

    @staticmethod
    def _returned_weights(cache: Any, average: bool, layout: Layout) -> np.ndarray:
        """The probabilities that multiplied the values (after dropout, as torch), (N, H, L, S')."""
        weights = cache.weights
        if cache.dropout_mask is not None:
            weights = weights * dropout_factor(cache.dropout_mask, cache.dropout_p, weights.dtype)
        if average:
            weights = weights.mean(axis=1)
        elif weights is cache.weights:
            weights = weights.copy()  # the caller may write into what we return; the cache stays ours
        return weights if layout.batched else weights[0]

    def backward(self, dout: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input gradients; parameter gradients accumulate into ``self.grads``.

        Reverse the forward, pair by pair (rows are the N * L query or N * S' key positions)::

            dconcat = dY W_o,  dW_o += dY^T concat,  db_o += colsum(dY)     linear backward
            dO_h    = head h of dconcat                                      split_heads = backward of merge_heads
            dQ_h, dK_j, dV_j = attention backward                            dK_j, dV_j sum over the G query
                                                                             heads h with h // G = j (GQA)
            dQ, dK, dV = merge_heads(...)                                    merge_heads = backward of split_heads
            dbias_k += sum_n dK[n, S],  dbias_v += sum_n dV[n, S]            the appended rows; the zero row
                                                                             is a constant and gets nothing
            dX_q = dQ W_q,  dW_q += dQ^T X_q,  db_q += colsum(dQ)            linear backward; the same for
                                                                             k, v with their first S rows

        With no appended key, db_k is exactly 0: b_k adds q . b_k to a whole row of scores,
        which softmax ignores (the rows of dS sum to 0).

        Self-attention (``forward(x)``) used x three times: dX = dX_q + dX_k + dX_v.

        Returns
        -------
        dx for ``forward(x)``; otherwise (dquery, dkey, dvalue), each in its input's layout.

        See docs/derivations.md, sections "Multi-head attention", "Grouped-query attention"
        and "add_bias_kv and add_zero_attn".
        """
        cache = self.saved_cache()
        dout = check_dout(dout, cache.out_shape, self.dtype)
        d_concat, d_out_weight, d_out_bias = kernels.linear_backward(cache.layout.to_internal(dout), cache.out_proj)
        self.accumulate("out_proj.weight", d_out_weight)
        if d_out_bias is not None:
            self.accumulate("out_proj.bias", d_out_bias)

        dq, dk, dv = cache.attention_backward(split_heads(d_concat, self.num_heads), cache.attention)
        dk, d_bias_k = append_keys_backward(merge_heads(dk), cache.appended[0])
        dv, d_bias_v = append_keys_backward(merge_heads(dv), cache.appended[1])
        if d_bias_k is not None:
            self.accumulate("bias_k", d_bias_k)
            self.accumulate("bias_v", d_bias_v)

        d_inputs = []
        for name, d_projected, projection_cache in zip(PROJECTIONS, (merge_heads(dq), dk, dv), cache.projections):
            dx, d_weight, d_bias = kernels.linear_backward(d_projected, projection_cache)
            self.accumulate(f"{name}.weight", d_weight)
            if d_bias is not None:
                self.accumulate(f"{name}.bias", d_bias)
            d_inputs.append(cache.layout.to_caller(dx))
        if cache.self_attention:
            return d_inputs[0] + d_inputs[1] + d_inputs[2]
        return tuple(d_inputs)

    @classmethod
    def from_torch(cls, torch_module: Any, *, impl: str = DEFAULT_IMPL, rng: Any = None) -> MultiHeadAttention:
        """An equal module (options, parameters, train/eval mode) from a ``torch.nn.MultiheadAttention``."""
        return torch_interop.from_torch(cls, torch_module, impl=impl, rng=rng)

    def to_torch(self) -> Any:
        """The equal ``torch.nn.MultiheadAttention`` (needs num_kv_heads == num_heads)."""
        return torch_interop.to_torch(self)

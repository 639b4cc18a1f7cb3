"""``CausalSelfAttention``: the attention layer of today's decoder-only models over the functional pairs.

The forward, batch first, for H query heads of width D = embed_dim / H and
Hkv key/value heads (H a multiple of Hkv: grouped-query attention), at
positions p (default 0..L-1)::

    Q = split(X W_q^T + b_q)            (N, H, L, D)
    K = split(X W_k^T + b_k)            (N, Hkv, L, D)
    V = split(X W_v^T + b_v)            (N, Hkv, L, D)
    Q = rms_norm(Q) g_q,  K = rms_norm(K) g_k      per head, over D (qk_norm: Qwen3, OLMo 2)
    Q = rope(Q, p),  K = rope(K, p)                (rope)
    O = attention(Q, K, V; causal, window, softcap, sinks)    scale 1/sqrt(D)
    Y = merge(O) W_o^T + b_o            (N, L, E)

Llama, Mistral, Qwen and gpt-oss are this layer with different switches.
See docs/derivations.md, section "The modern attention layer".
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from . import functional as F
from . import kernels
from .attention_impls import ATTENTION_IMPLS, DEFAULT_IMPL
from .functional.heads import merge_heads, split_heads
from .module import Module, check_float_dtype
from .validation import (
    as_float_array,
    as_generator,
    as_positions,
    check_bool,
    check_choice,
    check_dout,
    check_ndim,
    check_positive_int,
    check_probability,
    check_real,
    check_softcap,
    check_window,
)

__all__ = ["CausalSelfAttention"]

PROJECTIONS = ("q_proj", "k_proj", "v_proj")
QK_NORM_EPS = 1e-6  # Qwen3's and OLMo 2's rms_norm_eps


class CausalSelfAttentionCache(NamedTuple):
    """What the backward needs: every pair's cache, in forward order (None for a step switched off)."""

    projections: tuple[F.LinearCache, F.LinearCache, F.LinearCache]
    norms: tuple[F.RMSNormCache, F.RMSNormCache] | None
    ropes: tuple[F.RopeCache, F.RopeCache] | None
    attention: Any  # the cache of the attention implementation that ran
    attention_backward: Callable
    out_proj: F.LinearCache
    batched: bool
    out_shape: tuple


class CausalSelfAttention(Module):
    """Causal self-attention as in Llama, Mistral, Qwen3 and gpt-oss: GQA, QK-norm, RoPE, window, soft-cap, sinks.

    Parameters
    ----------
    embed_dim : int
        Width E of the input and output; ``num_heads`` heads of ``head_dim = E // num_heads``.
    num_heads : int
    num_kv_heads : int, optional
        Key/value heads (default ``num_heads``); fewer is grouped-query attention, 1
        multi-query. ``k_proj`` and ``v_proj`` output ``num_kv_heads * head_dim`` features.
    rope : bool
        Rotary position embedding of q and k (head_dim must then be even).
    rope_base : float
        RoPE's wavelength base (10000 in Llama 2, 500000 in Llama 3).
    interleaved : bool
        RoPE's layout: False pairs feature i with i + D/2 (Hugging Face's ``rotate_half``),
        True pairs 2i with 2i + 1 (Meta's Llama code).
    qk_norm : bool
        RMSNorm of each head of q and k over its D features, before RoPE, with the gains
        ``q_norm.weight`` and ``k_norm.weight`` (D,), starting at 1 (eps 1e-6).
    window : (left, right), optional
        Sliding window: query i sees key j only if ``i - left <= j <= i + right``, ANDed with
        the causal mask (``(4095, 0)`` or ``(4095, None)``: Mistral's window).
    softcap : float, optional
        Scores ``c tanh(s / c)`` before the masks (Gemma 2).
    sinks : bool
        A learnable logit per head in every row's softmax denominator (gpt-oss): the
        parameter ``sinks`` (num_heads,), starting at 0.
    bias : bool
        Biases on the four projections (Llama has none; Qwen2 has q/k/v biases).
    dropout : float
        Dropout on the attention probabilities, in training mode only.
    impl : str
        A key of ``numpy_attention.attention_impls.ATTENTION_IMPLS``.
    dtype : np.float32 or np.float64
    rng : numpy.random.Generator or int, optional
        Draws the initial parameters (``torch.nn.Linear``'s U(-1/sqrt(fan_in), 1/sqrt(fan_in))),
        then the dropout masks.

    Notes
    -----
    The parameters are named ``q_proj.weight``, ``k_proj.weight``, ``v_proj.weight``,
    ``o_proj.weight`` (weights (out, in), as torch), ``*.bias`` with ``bias=True``,
    ``q_norm.weight``, ``k_norm.weight`` with ``qk_norm`` and ``sinks`` with ``sinks``:
    Hugging Face's names for Llama / Qwen3 attention.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        rope: bool = True,
        rope_base: float = 10000.0,
        interleaved: bool = False,
        qk_norm: bool = False,
        window: tuple[int | None, int | None] | None = None,
        softcap: float | None = None,
        sinks: bool = False,
        bias: bool = False,
        dropout: float = 0.0,
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
            raise ValueError(f"num_heads must be a multiple of num_kv_heads; got num_heads={num_heads}, "
                             f"num_kv_heads={self.num_kv_heads}")
        self.rope = check_bool(rope, "rope")
        if self.rope and self.head_dim % 2:
            raise ValueError(f"rope needs an even head_dim = embed_dim // num_heads; got embed_dim={embed_dim}, "
                             f"num_heads={num_heads}, head_dim={self.head_dim}")
        self.rope_base = check_real(rope_base, "rope_base")
        if self.rope_base <= 0:
            raise ValueError(f"rope_base must be a positive real number (e.g. 10000.0); got {rope_base!r}")
        self.interleaved = check_bool(interleaved, "interleaved")
        self.qk_norm = check_bool(qk_norm, "qk_norm")
        self.window = check_window(window)
        self.softcap = check_softcap(softcap)
        self.sinks = check_bool(sinks, "sinks")
        self.bias = check_bool(bias, "bias")
        self.dropout = check_probability(dropout, "dropout")
        self.impl = check_choice(impl, "impl", sorted(ATTENTION_IMPLS))
        self.dtype = check_float_dtype(dtype)
        self.rng = as_generator(rng)
        self._init_params()

    def _init_params(self) -> None:
        """torch.nn.Linear's initialisation for the projections; gains 1, sinks 0."""
        embed, kv_features = self.embed_dim, self.num_kv_heads * self.head_dim
        for name, rows in zip((*PROJECTIONS, "o_proj"), (embed, kv_features, kv_features, embed)):
            bound = 1.0 / math.sqrt(embed)  # every projection's fan_in is E (o_proj's: H * D = E)
            self.add_param(f"{name}.weight", self.rng.uniform(-bound, bound, (rows, embed)).astype(self.dtype))
            if self.bias:
                self.add_param(f"{name}.bias", self.rng.uniform(-bound, bound, rows).astype(self.dtype))
        if self.qk_norm:
            for name in ("q_norm.weight", "k_norm.weight"):
                self.add_param(name, np.ones(self.head_dim, self.dtype))
        if self.sinks:
            self.add_param("sinks", np.zeros(self.num_heads, self.dtype))

    def forward(self, x: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Causal self-attention of ``x`` (N, L, embed_dim) or unbatched (L, embed_dim).

        ``positions`` (L,) integers place the rows for RoPE (default 0..L-1; a KV cache's
        new rows start at its length). The causal mask and the window act on the row
        indices. Returns the output in the layout of ``x``.
        """
        x = as_float_array(x, "x", dtype=self.dtype)
        check_ndim(x, "x", (2, 3))
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must have embed_dim = {self.embed_dim} features (last dimension); got shape {x.shape}")
        length = x.shape[-2]
        positions = None if positions is None else as_positions(positions, "positions", length)
        X = x if x.ndim == 3 else x[None]  # (N, L, E)

        projected, projection_caches = [], []
        for name in PROJECTIONS:
            out, cache = kernels.linear_forward(X, self.params[f"{name}.weight"], self.params.get(f"{name}.bias"))
            projected.append(out)
            projection_caches.append(cache)
        Q = split_heads(projected[0], self.num_heads)  # (N, H, L, D)
        K = split_heads(projected[1], self.num_kv_heads)  # (N, Hkv, L, D)
        V = split_heads(projected[2], self.num_kv_heads)  # (N, Hkv, L, D)
        norms = ropes = None
        if self.qk_norm:
            Q, q_norm = F.rms_norm_forward(Q, self.params["q_norm.weight"], QK_NORM_EPS)
            K, k_norm = F.rms_norm_forward(K, self.params["k_norm.weight"], QK_NORM_EPS)
            norms = (q_norm, k_norm)
        if self.rope:
            Q, q_rope = F.rope_forward(Q, positions, base=self.rope_base, interleaved=self.interleaved)
            K, k_rope = F.rope_forward(K, positions, base=self.rope_base, interleaved=self.interleaved)
            ropes = (q_rope, k_rope)

        attention_forward, attention_backward = ATTENTION_IMPLS[self.impl]
        options = {name: value for name, value in (("softcap", self.softcap), ("window", self.window),
                                                   ("sinks", self.params.get("sinks"))) if value is not None}
        dropout_p = self.dropout if self.training else 0.0
        heads, attention_cache = attention_forward(Q, K, V, None, dropout_p, True, 1.0 / math.sqrt(self.head_dim),
                                                   rng=self.rng, **options)
        out, out_cache = kernels.linear_forward(merge_heads(heads), self.params["o_proj.weight"],
                                                self.params.get("o_proj.bias"))
        out = out if x.ndim == 3 else out[0]
        self._cache = CausalSelfAttentionCache(tuple(projection_caches), norms, ropes, attention_cache,
                                               attention_backward, out_cache, x.ndim == 3, out.shape)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dx; every parameter gradient accumulates into ``self.grads``.

        Each step's backward, in reverse order (rows are the N * L positions)::

            dconcat = dY W_o,  dW_o += dY^T concat,  db_o += colsum(dY)      linear backward
            dQ, dK, dV (, dsinks) = attention backward of split(dconcat)       dK, dV summed over each group
            dQ = rope(dQ, -p),  dK = rope(dK, -p)                              RoPE backward: the inverse rotation
            dQ, dg_q = rms_norm backward,  dK, dg_k likewise                   QK-norm backward
            dX = sum over q, k, v of merge(d.) W_.,  dW_. += merge(d.)^T X     linear backward, x used three times

        See docs/derivations.md, section "The modern attention layer".
        """
        cache = self.saved_cache()
        dout = check_dout(dout, cache.out_shape, self.dtype)
        d_concat, d_o_weight, d_o_bias = kernels.linear_backward(dout if cache.batched else dout[None], cache.out_proj)
        self.accumulate("o_proj.weight", d_o_weight)
        if d_o_bias is not None:
            self.accumulate("o_proj.bias", d_o_bias)
        dQ, dK, dV, *d_sinks = cache.attention_backward(split_heads(d_concat, self.num_heads), cache.attention)
        if d_sinks:
            self.accumulate("sinks", d_sinks[0])
        if cache.ropes is not None:
            dQ = F.rope_backward(dQ, cache.ropes[0])
            dK = F.rope_backward(dK, cache.ropes[1])
        if cache.norms is not None:
            dQ, d_q_gain = F.rms_norm_backward(dQ, cache.norms[0])
            dK, d_k_gain = F.rms_norm_backward(dK, cache.norms[1])
            self.accumulate("q_norm.weight", d_q_gain)
            self.accumulate("k_norm.weight", d_k_gain)
        dX = 0.0
        for name, d_heads, projection_cache in zip(PROJECTIONS, (dQ, dK, dV), cache.projections):
            d_x, d_weight, d_bias = kernels.linear_backward(merge_heads(d_heads), projection_cache)
            self.accumulate(f"{name}.weight", d_weight)
            if d_bias is not None:
                self.accumulate(f"{name}.bias", d_bias)
            dX = dX + d_x
        return dX if cache.batched else dX[0]

"""nanoGPT's GPT (karpathy/nanoGPT model.py), trained by hand-written backward passes.

Token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (see
:mod:`numpy_attention.models.blocks`), a final LayerNorm ``ln_f`` and an
``lm_head`` tied to the token embedding::

    x = drop(wte[idx] + wpe[0 .. T-1])            (B, T, E)
    x = block_i(x)  for i in 0 .. n_layer - 1     (B, T, E)
    logits = ln_f(x) @ wte^T                      (B, T, V)
    loss = cross_entropy(logits, targets, ignore_index=-1)

``params`` and ``grads`` use nanoGPT's parameter names; the tied weight is held
once, as ``transformer.wte.weight``, and receives the gradient of both its uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import functional as F
from ..kernels import embedding_backward, embedding_forward, schedule
from ..module import Module, check_float_dtype
from ..optim import AdamW
from ..validation import (
    as_generator,
    as_index_array,
    check_bool,
    check_choice,
    check_dout,
    check_positive_int,
    check_probability,
    check_real,
    check_state_dict,
    describe,
)
from . import blocks
from .kv_cache import KVCache

WTE, WPE, LM_HEAD = "transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"
NORMS, MLPS = ("layer", "rms"), ("gelu", "swiglu")


class GPT(Module):
    """GPT-2 as nanoGPT builds it: ``GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias)``.

    Initialised as nanoGPT: every Linear and Embedding weight N(0, 0.02), the two
    ``c_proj`` weights of each block N(0, 0.02 / sqrt(2 n_layer)), biases 0,
    LayerNorm weights 1. ``bias=False`` drops every Linear and LayerNorm bias.

    The Llama family's configuration, by keyword: ``norm="rms"`` (RMSNorm, weight only),
    ``position="rope"`` (RoPE on queries and keys, no ``wpe``), ``mlp="swiglu"``
    (``c_proj(silu(c_gate(h)) * c_fc(h))``, hidden width 4E), ``n_kv_head`` < ``n_head``
    (grouped-query attention; ``c_attn`` maps E to (n_head + 2 n_kv_head) head_dim), with
    ``bias=False``; each option also works alone.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        n_kv_head: int | None = None,
        norm: str = "layer",
        position: str = "learned",
        mlp: str = "gelu",
        rope_base: float = 10000.0,
        dtype: Any = np.float64,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = check_positive_int(vocab_size, "vocab_size")
        self.block_size = check_positive_int(block_size, "block_size")
        self.n_layer = check_positive_int(n_layer, "n_layer")
        self.n_head = check_positive_int(n_head, "n_head")
        self.n_embd = check_positive_int(n_embd, "n_embd")
        if n_embd % n_head:
            raise ValueError(f"n_embd must be a multiple of n_head; got n_embd={n_embd}, n_head={n_head}")
        self.n_kv_head = self.n_head if n_kv_head is None else check_positive_int(n_kv_head, "n_kv_head")
        if n_head % self.n_kv_head:
            raise ValueError(f"n_head must be a multiple of n_kv_head; got n_head={n_head}, n_kv_head={n_kv_head}")
        rope = check_choice(position, "position", ("learned", "rope")) == "rope"
        if rope and (n_embd // n_head) % 2:
            raise ValueError(f"RoPE needs an even head_dim; got n_embd // n_head = {n_embd // n_head}")
        self.arch = blocks.Arch(self.n_head, self.n_kv_head, n_embd // n_head, check_choice(norm, "norm", NORMS),
                                rope, check_choice(mlp, "mlp", MLPS), check_real(rope_base, "rope_base"))
        self.dropout = check_probability(dropout, "dropout")
        self.bias = check_bool(bias, "bias")
        self.dtype = check_float_dtype(dtype)
        self.rng = as_generator(rng)
        E, std, proj_std = n_embd, 0.02, 0.02 / math.sqrt(2 * n_layer)
        qkv = (self.n_head + 2 * self.n_kv_head) * self.arch.head_dim
        self.add_param(WTE, self._normal((vocab_size, E), std))
        if not rope:
            self.add_param(WPE, self._normal((block_size, E), std))
        for i in range(n_layer):
            prefix = f"transformer.h.{i}."
            self._layer_norm(prefix + "ln_1")
            self._linear(prefix + "attn.c_attn", (qkv, E), std)
            self._linear(prefix + "attn.c_proj", (E, E), proj_std)
            self._layer_norm(prefix + "ln_2")
            self._linear(prefix + "mlp.c_fc", (4 * E, E), std)
            if self.arch.mlp == "swiglu":
                self._linear(prefix + "mlp.c_gate", (4 * E, E), std)
            self._linear(prefix + "mlp.c_proj", (E, 4 * E), proj_std)
        self._layer_norm("transformer.ln_f")

    def _normal(self, shape: tuple, std: float) -> np.ndarray:
        return (std * self.rng.standard_normal(shape)).astype(self.dtype)

    def _linear(self, name: str, shape: tuple, std: float) -> None:
        self.add_param(name + ".weight", self._normal(shape, std))
        if self.bias:
            self.add_param(name + ".bias", np.zeros(shape[0], dtype=self.dtype))

    def _layer_norm(self, name: str) -> None:
        self.add_param(name + ".weight", np.ones(self.n_embd, dtype=self.dtype))
        if self.bias and self.arch.norm == "layer":
            self.add_param(name + ".bias", np.zeros(self.n_embd, dtype=self.dtype))

    def __repr__(self) -> str:
        return (f"GPT(vocab_size={self.vocab_size}, block_size={self.block_size}, n_layer={self.n_layer}, "
                f"n_head={self.n_head}, n_embd={self.n_embd}, dropout={self.dropout}, bias={self.bias}, "
                f"n_kv_head={self.n_kv_head}, norm={self.arch.norm!r}, "
                f"position={'rope' if self.arch.rope else 'learned'!r}, mlp={self.arch.mlp!r}, dtype={self.dtype})")

    def num_params(self) -> int:
        """Every parameter counted once (the tied head is the token embedding)."""
        return sum(p.size for p in self.params.values())

    # ----- input checks -----------------------------------------------------------------------

    def _check_idx(self, idx: Any) -> np.ndarray:
        idx = as_index_array(idx, "idx", self.vocab_size)
        if idx.ndim != 2:
            raise ValueError(f"idx must be 2-D (batch, time) token ids; got shape {idx.shape}")
        if not 1 <= idx.shape[1] <= self.block_size:
            raise ValueError(f"idx must hold 1 to block_size = {self.block_size} positions; got {idx.shape[1]}")
        return idx

    # ----- forward / backward -----------------------------------------------------------------

    def forward(self, idx: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits (B, T, V), loss)`` for token ids ``idx`` (B, T), T <= block_size.

        ``loss`` is the mean cross-entropy over the targets that are not -1 (None without
        ``targets``). Unlike nanoGPT, the logits cover every position also without targets.

        A large enough batch without dropout runs as shards of rows, one per core, each the
        whole model on its rows (:func:`~numpy_attention.kernels.schedule.batch_shards`): the
        rows are independent until the loss, which sums every shard's terms before the mean.
        """
        idx = self._check_idx(idx)
        B, T = idx.shape
        if targets is not None:
            targets = as_index_array(targets, "targets", self.vocab_size, ignore_index=-1)
            if targets.shape != idx.shape:
                raise ValueError(f"targets must have idx's shape {idx.shape}; got {targets.shape}")
        p = self.dropout if self.training else 0.0
        # Dropout draws its masks from one generator in order: sharded rows would draw them in any order.
        shards = schedule.batch_shards(B, B * T * self.n_embd) if p == 0.0 else [slice(0, B)]
        passes: list[Any] = [None] * len(shards)

        def run(i: int) -> None:
            passes[i] = self._forward_rows(idx[shards[i]], None if targets is None else targets[shards[i]], p)

        schedule.run_chunks(run, range(len(shards)), parallel=len(shards) > 1)
        logits = passes[0][0] if len(shards) == 1 else np.concatenate([logits for logits, _, _ in passes])
        loss = divisor = None
        if targets is not None:
            kept = int((targets != -1).sum())
            loss_sum = sum((shard_loss for _, shard_loss, _ in passes[1:]), passes[0][1])  # in shard order
            loss = np.asarray(np.nan if kept == 0 else loss_sum / np.asarray(kept, dtype=self.dtype), dtype=self.dtype)
            divisor = max(kept, 1)  # the loss's: no target kept, no gradient
        self._cache = (shards, [cache for _, _, cache in passes], divisor, p)
        return logits, loss

    def _forward_rows(self, idx: np.ndarray, targets: np.ndarray | None, p: float) -> tuple:
        """(logits, summed cross-entropy or None, cache) of the model on some rows of the batch."""
        T = idx.shape[1]
        tok, tok_cache = embedding_forward(idx, self.params[WTE])
        pos_cache = None
        if not self.arch.rope:
            pos, pos_cache = embedding_forward(np.arange(T), self.params[WPE])
            tok = tok + pos
        x, keep = blocks.dropout(tok, p, self.rng)
        block_caches = []
        for i in range(self.n_layer):
            x, cache = blocks.block_forward(x, self.params, f"transformer.h.{i}.", self.arch, p, self.rng)
            block_caches.append(cache)
        x, ln_f = blocks.norm(x, self.params, "transformer.ln_f", self.arch)
        logits, head = blocks.linear_forward(x, self.params[WTE])
        loss_sum = loss_cache = None
        if targets is not None:
            loss_sum, loss_cache = F.cross_entropy_forward(logits.reshape(-1, self.vocab_size), targets.reshape(-1),
                                                           ignore_index=-1, reduction="sum")
        return logits, loss_sum, (tok_cache, pos_cache, keep, block_caches, ln_f, head, loss_cache)

    def backward(self, dlogits: np.ndarray | None = None) -> None:
        """Accumulate into ``grads`` the gradient of the loss (or, given ``dlogits``, of ``sum(logits * dlogits)``).

        Token ids have no gradient: returns None. The tied ``wte`` receives both its uses'
        gradients, ``dW_te = dlogits^T ln_f(x) + scatter_add(dx_0)``, and ``wpe`` the sum over
        the batch. A sharded forward runs its backward by the same shards; each sums its own
        parameter gradients, added to ``grads`` in shard order.
        See docs/derivations.md, section "GPT: residual blocks and the tied head".
        """
        shards, caches, divisor, p = self.saved_cache()
        if dlogits is None and divisor is None:
            raise ValueError("GPT.backward() without dlogits needs a forward with targets (there is no loss)")
        if dlogits is not None:  # checked whole: a shard's rows of a mis-shaped array could look right
            dlogits = check_dout(dlogits, (shards[-1].stop, caches[0][0].indices.shape[1], self.vocab_size),
                                 self.dtype, name="dlogits")
        sums: list[dict[str, np.ndarray]] = [self.grads] + [{} for _ in shards[1:]]  # the others fill their own

        def run(i: int) -> None:
            rows = None if dlogits is None else dlogits[shards[i]]
            self._backward_rows(rows, caches[i], divisor, p, sums[i])

        schedule.run_chunks(run, range(len(shards)), parallel=len(shards) > 1)
        for shard_sums in sums[1:]:
            for name, grad in shard_sums.items():
                self.grads[name] += grad

    def _backward_rows(self, dlogits: np.ndarray | None, cache: tuple, divisor: int | None, p: float,
                       grads: dict[str, np.ndarray]) -> None:
        """The backward of :meth:`_forward_rows`, accumulated into ``grads``; the loss is the sum over ``divisor``."""
        tok_cache, pos_cache, keep, block_caches, ln_f, head, loss_cache = cache
        if dlogits is None:  # d(loss_sum / divisor) / dlogits
            dlogits = F.cross_entropy_backward(np.asarray(1.0, dtype=self.dtype) / divisor, loss_cache)
            dlogits = dlogits.reshape(tok_cache.indices.shape + (self.vocab_size,))
        dx, dwte, _ = blocks.linear_backward(dlogits, head)
        blocks.accumulate(grads, WTE, dwte)
        dx = blocks.norm_grad(dx, ln_f, grads, "transformer.ln_f")
        for i in reversed(range(self.n_layer)):
            dx = blocks.block_backward(dx, block_caches[i], grads, f"transformer.h.{i}.", self.arch, p)
        dx = blocks.dropout_grad(dx, keep, p)
        blocks.accumulate(grads, WTE, embedding_backward(dx, tok_cache))
        if pos_cache is not None:
            blocks.accumulate(grads, WPE, embedding_backward(dx.sum(axis=0), pos_cache))  # every batch row's

    def attention_weights(self) -> list[np.ndarray]:
        """Each layer's attention probabilities (B, n_head, T, T) from the last forward (before dropout)."""
        caches = self.saved_cache()[1]
        return [np.concatenate([cache[3][i].attn.sdpa.weights for cache in caches]) if len(caches) > 1
                else caches[0][3][i].attn.sdpa.weights for i in range(self.n_layer)]

    # ----- state dict -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every key of nanoGPT's ``state_dict()``, ``lm_head.weight`` (a copy of wte) included."""
        state = super().state_dict()
        state[LM_HEAD] = state[WTE].copy()
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Load nanoGPT's keys (``{k: v.numpy()}`` of a torch ``state_dict()``); checked before anything is written.

        ``lm_head.weight`` must equal ``transformer.wte.weight`` (the head is tied). The causal-mask
        buffers ``transformer.h.{i}.attn.bias`` of nanoGPT without flash attention are ignored.
        Raises ValueError for missing, extra or mis-shaped keys and an untied head; the model
        is unchanged when anything is rejected.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array; got {describe(state_dict)}")
        masks = {f"transformer.h.{i}.attn.bias" for i in range(self.n_layer)}
        rest = {k: v for k, v in state_dict.items() if k != LM_HEAD and k not in masks}
        if LM_HEAD not in state_dict:
            raise ValueError(f"state_dict is missing {LM_HEAD!r} (nanoGPT's tied head, equal to {WTE!r})")
        checked = check_state_dict(rest, self.params, "GPT")
        head = state_dict[LM_HEAD]
        if not isinstance(head, np.ndarray) or head.shape != checked[WTE].shape or not np.array_equal(
            head.astype(self.dtype, copy=False), checked[WTE]
        ):
            raise ValueError(f"state_dict[{LM_HEAD!r}] must equal state_dict[{WTE!r}]: this GPT's head is tied "
                             f"to the token embedding; got {describe(head)} that differs")
        for name, value in checked.items():
            np.copyto(self.params[name], value)

    # ----- optimizer --------------------------------------------------------------------------

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas: tuple[float, float]) -> AdamW:
        """nanoGPT's AdamW: decay every parameter of two or more dimensions, not the others."""
        decay = [p for p in self.params.values() if p.ndim >= 2]
        no_decay = [p for p in self.params.values() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return AdamW(self, lr=learning_rate, betas=betas, param_groups=groups)

    # ----- inference with a KV cache ----------------------------------------------------------

    def decode(self, idx: np.ndarray, cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
        """Logits (B, n, V) of new tokens ``idx`` (B, n) given the keys and values cached for earlier positions.

        ``cache=None`` starts a cache (the prompt, n <= block_size, causal among itself); then
        one token at a time (n = 1), each a single query against every cached key. No dropout.
        Equal to :meth:`forward` on the whole sequence at those positions.
        """
        if cache is None:
            idx = self._check_idx(idx)
            cache = KVCache.empty(self, idx.shape[0])
        else:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache must be the KVCache returned by decode(); got {describe(cache)}")
            idx = as_index_array(idx, "idx", self.vocab_size)
            if idx.shape != (cache.batch, 1):
                raise ValueError(f"idx must be one new token per row, shape ({cache.batch}, 1); got {idx.shape}")
            if cache.length >= self.block_size:
                raise ValueError(f"the cache is full (block_size = {self.block_size} positions): crop the context "
                                 "and start a new cache")
        start, n = cache.length, idx.shape[1]
        x = self.params[WTE][idx]
        if not self.arch.rope:
            x = x + self.params[WPE][start : start + n]
        for i in range(self.n_layer):
            x = blocks.block_decode(x, self.params, f"transformer.h.{i}.", self.arch, cache.keys[i],
                                    cache.values[i], start, self.rng)
        x, _ = blocks.norm(x, self.params, "transformer.ln_f", self.arch)
        cache.length = start + n
        return blocks.linear_forward(x, self.params[WTE])[0], cache

    def generate(self, idx: np.ndarray, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 rng: np.random.Generator | None = None, *, kv_cache: bool = True) -> np.ndarray:
        """Sample ``max_new_tokens`` tokens after ``idx`` (B, T), as nanoGPT's ``generate``: (B, T + max_new_tokens).

        Each step: the logits of the last position (of the context cropped to its last
        ``block_size`` tokens) over ``temperature``; with ``top_k``, all but the k largest set to
        -inf (``top_k=1`` is greedy); one token drawn from their softmax with ``rng`` (default:
        the model's). No dropout.

        With ``kv_cache`` (the default) each new token costs one query per layer against the
        cached keys and values. Once the context is longer than ``block_size`` the crop moves
        every token to a new learned position (``wpe``), which invalidates every cached key:
        from then on each step rebuilds the cache from the cropped context, exactly as the
        forward without a cache does.
        """
        idx = as_index_array(idx, "idx", self.vocab_size)
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be 2-D (batch, time) with at least one token; got shape {idx.shape}")
        if isinstance(max_new_tokens, (bool, np.bool_)) or not isinstance(max_new_tokens, (int, np.integer)):
            raise TypeError(f"max_new_tokens must be an int; got {describe(max_new_tokens)}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
        temperature = check_real(temperature, "temperature")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        if top_k is not None:
            top_k = check_positive_int(top_k, "top_k")
        rng = self.rng if rng is None else as_generator(rng)
        cache = None
        for _ in range(max_new_tokens):
            context = idx[:, -self.block_size:]
            if not kv_cache:
                logits = self._eval_logits(context)
            elif cache is None or idx.shape[1] > self.block_size:
                logits, cache = self.decode(context)  # a new cache: the first step, or after a crop
            else:
                logits, cache = self.decode(idx[:, -1:], cache)
            idx = np.concatenate([idx, sample(logits[:, -1, :], temperature, top_k, rng)[:, None]], axis=1)
        return idx

    def _eval_logits(self, idx: np.ndarray) -> np.ndarray:
        """forward() without dropout, leaving the training mode and the last cached forward as they were."""
        mode, saved = self.training, self._cache
        try:
            return self.eval().forward(idx)[0]
        finally:
            self.training, self._cache = mode, saved


def sample(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of ``logits`` (B, V), as nanoGPT: temperature, top-k, multinomial."""
    logits = logits / temperature
    if top_k is not None:
        kth = -np.sort(-logits, axis=-1)[:, min(top_k, logits.shape[-1]) - 1 : min(top_k, logits.shape[-1])]
        logits = np.where(logits < kth, -np.inf, logits)
    probs, _ = F.softmax_forward(logits, axis=-1)
    cumulative = np.cumsum(probs, axis=-1)
    u = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=-1), logits.shape[-1] - 1)

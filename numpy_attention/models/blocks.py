"""The pieces of a nanoGPT block as forward/backward functions over the model's parameter dict.

A block is pre-LayerNorm with two residual branches::

    x = x + attn(ln_1(x))        attn: c_attn Linear(E, 3E) -> split q, k, v -> heads -> causal
                                       attention -> merge heads -> c_proj Linear(E, E) -> dropout
    x = x + mlp(ln_2(x))         mlp:  c_fc Linear(E, 4E) -> GELU -> c_proj Linear(4E, E) -> dropout

:class:`Arch` switches the pieces to the Llama family's: RMSNorm for LayerNorm, RoPE on q and
k (instead of learned positions), grouped-query attention (``n_kv_head`` k/v heads, so c_attn
maps E to (n_head + 2 n_kv_head) D), and a SwiGLU MLP (``c_proj(silu(c_gate(h)) * c_fc(h))``).

Every function takes ``params`` (name -> array) and the block's key ``prefix``
(``"transformer.h.3."``), so the names are nanoGPT's. Backwards accumulate into
``grads`` and return the input gradient. A residual ``x + f(x)`` has the
backward ``dx = dout + df`` (the sum rule of docs/derivations.md's Conventions).

The attention pair is called in one place, :func:`attend`. The engines are chosen once, by
the module-level imports below: ``numpy_attention.kernels``, as every module of the library
runs them (``numpy_attention.functional`` has the textbook pairs with the same signatures and
results); every product of the model goes through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import functional as F
from ..functional.dropout import draw_keep_mask, dropout_factor
from ..functional.heads import merge_heads, split_heads
from ..kernels import (
    attention_backward,
    attention_forward,
    gelu_backward,
    gelu_forward,
    layer_norm_backward,
    layer_norm_forward,
    linear_backward,
    linear_forward,
)


@dataclass(frozen=True)
class Arch:
    """What a block is made of: ``norm`` "layer" or "rms", ``rope`` (else learned positions), ``mlp`` "gelu"
    or "swiglu", ``n_kv_head`` k/v heads (grouped-query attention when fewer than ``n_head``)."""

    n_head: int
    n_kv_head: int
    head_dim: int
    norm: str = "layer"
    rope: bool = False
    mlp: str = "gelu"
    rope_base: float = 10000.0
    eps: float = 1e-5


def dropout(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p); returns the keep-mask."""
    keep = draw_keep_mask(x.shape, p, rng)
    return (x, None) if keep is None else (x * dropout_factor(keep, p, x.dtype), keep)


def dropout_grad(dout: np.ndarray, keep: np.ndarray | None, p: float) -> np.ndarray:
    """The backward of :func:`dropout`: the same mask and scale on the upstream gradient."""
    return dout if keep is None else dout * dropout_factor(keep, p, dout.dtype)


def accumulate(grads: dict[str, np.ndarray], name: str, grad: np.ndarray | None) -> None:
    """``grads[name] += grad``; a name not yet in ``grads`` (a shard's own sums) starts at this fresh ``grad``."""
    if grad is None:
        return
    if name in grads:
        grads[name] += grad
    else:
        grads[name] = grad


def linear(x: np.ndarray, params: dict, name: str) -> tuple[np.ndarray, Any]:
    """``params[name.weight]``, ``params[name.bias]`` (if any) applied to x."""
    return linear_forward(x, params[name + ".weight"], params.get(name + ".bias"))


def linear_grad(dout: np.ndarray, cache: Any, grads: dict, name: str) -> np.ndarray:
    dx, dweight, dbias = linear_backward(dout, cache)
    accumulate(grads, name + ".weight", dweight)
    accumulate(grads, name + ".bias", dbias)
    return dx


def norm(x: np.ndarray, params: dict, name: str, arch: Arch) -> tuple[np.ndarray, Any]:
    """LayerNorm (weight, optional bias) or RMSNorm (weight), eps 1e-5, over the last axis."""
    if arch.norm == "rms":
        return F.rms_norm_forward(x, params[name + ".weight"], arch.eps)
    return layer_norm_forward(x, params[name + ".weight"], params.get(name + ".bias"), arch.eps)


def norm_grad(dout: np.ndarray, cache: Any, grads: dict, name: str) -> np.ndarray:
    if isinstance(cache, F.RMSNormCache):
        dx, dweight = F.rms_norm_backward(dout, cache)
        dbias = None
    else:
        dx, dweight, dbias = layer_norm_backward(dout, cache)
    accumulate(grads, name + ".weight", dweight)
    accumulate(grads, name + ".bias", dbias)
    return dx


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, is_causal: bool, dropout_p: float,
           rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """The one call of the attention pair: (B, H, L, D) queries against (B, Hkv, S, D) keys and values."""
    return attention_forward(q, k, v, dropout_p=dropout_p, is_causal=is_causal, rng=rng)


class AttentionCache(NamedTuple):
    qkv: Any
    rope_q: Any
    rope_k: Any
    sdpa: Any
    proj: Any
    keep: np.ndarray | None


class MLPCache(NamedTuple):
    fc: Any
    gate: Any
    act: Any
    proj: Any
    keep: np.ndarray | None


class BlockCache(NamedTuple):
    ln_1: Any
    attn: AttentionCache
    ln_2: Any
    mlp: MLPCache


def qkv_heads(h: np.ndarray, params: dict, prefix: str, arch: Arch, positions: np.ndarray) -> tuple:
    """c_attn, q, k, v split into heads (B, H, T, D), (B, Hkv, T, D) x 2, RoPE on q and k; and the caches."""
    qkv, cache = linear(h, params, prefix + "attn.c_attn")
    q_end, k_end = arch.n_head * arch.head_dim, (arch.n_head + arch.n_kv_head) * arch.head_dim
    q, k, v = np.split(qkv, [q_end, k_end], axis=-1)
    q, k, v = split_heads(q, arch.n_head), split_heads(k, arch.n_kv_head), split_heads(v, arch.n_kv_head)
    rope_q = rope_k = None
    if arch.rope:
        q, rope_q = F.rope_forward(q, positions, base=arch.rope_base)
        k, rope_k = F.rope_forward(k, positions, base=arch.rope_base)
    return q, k, v, (cache, rope_q, rope_k)


def attention_output(y: np.ndarray, params: dict, prefix: str, p: float, rng: np.random.Generator) -> tuple:
    """Merge the heads' outputs (B, H, T, D) -> (B, T, E), then c_proj and the residual dropout."""
    out, proj = linear(merge_heads(y), params, prefix + "attn.c_proj")
    out, keep = dropout(out, p, rng)
    return out, proj, keep


def attention_forward_block(h: np.ndarray, params: dict, prefix: str, arch: Arch, p: float,
                            rng: np.random.Generator) -> tuple[np.ndarray, AttentionCache]:
    """Causal self-attention of nanoGPT's ``CausalSelfAttention`` (dropout p on the weights and the output)."""
    q, k, v, (qkv, rope_q, rope_k) = qkv_heads(h, params, prefix, arch, np.arange(h.shape[1]))
    y, sdpa = attend(q, k, v, True, p, rng)
    out, proj, keep = attention_output(y, params, prefix, p, rng)
    return out, AttentionCache(qkv, rope_q, rope_k, sdpa, proj, keep)


def attention_backward_block(dout: np.ndarray, cache: AttentionCache, grads: dict, prefix: str, arch: Arch,
                             p: float) -> np.ndarray:
    dy = linear_grad(dropout_grad(dout, cache.keep, p), cache.proj, grads, prefix + "attn.c_proj")
    dq, dk, dv = attention_backward(split_heads(dy, arch.n_head), cache.sdpa)
    if arch.rope:
        dq, dk = F.rope_backward(dq, cache.rope_q), F.rope_backward(dk, cache.rope_k)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    return linear_grad(dqkv, cache.qkv, grads, prefix + "attn.c_attn")


def mlp_forward(h: np.ndarray, params: dict, prefix: str, arch: Arch, p: float, rng: np.random.Generator) -> tuple:
    """nanoGPT's ``MLP``: c_fc (E -> 4E), exact GELU, c_proj (4E -> E), dropout; or SwiGLU with c_gate."""
    a, fc = linear(h, params, prefix + "mlp.c_fc")
    gate = None
    if arch.mlp == "swiglu":
        g, gate = linear(h, params, prefix + "mlp.c_gate")
        a, act = F.swiglu_forward(g, a)
    else:
        a, act = gelu_forward(a)
    out, proj = linear(a, params, prefix + "mlp.c_proj")
    out, keep = dropout(out, p, rng)
    return out, MLPCache(fc, gate, act, proj, keep)


def mlp_backward(dout: np.ndarray, cache: MLPCache, grads: dict, prefix: str, p: float) -> np.ndarray:
    """The MLP read backwards: dropout, c_proj, the activation, c_fc (and c_gate).

    ::

        dg = dropout^T(dout) W_proj          (B, T, 4E)
        da = dg * gelu'(a)                   (B, T, 4E)
        dh = da W_fc                         (B, T, E)

    SwiGLU: ``dgate, dup`` from ``swiglu_backward``, and ``dh = dup W_fc + dgate W_gate``.

    See docs/derivations.md, section "GPT: residual blocks and the tied head".
    """
    dg = linear_grad(dropout_grad(dout, cache.keep, p), cache.proj, grads, prefix + "mlp.c_proj")
    if cache.gate is None:
        return linear_grad(gelu_backward(dg, cache.act), cache.fc, grads, prefix + "mlp.c_fc")
    dgate, dup = F.swiglu_backward(dg, cache.act)
    dh = linear_grad(dup, cache.fc, grads, prefix + "mlp.c_fc")
    return dh + linear_grad(dgate, cache.gate, grads, prefix + "mlp.c_gate")


def block_forward(x: np.ndarray, params: dict, prefix: str, arch: Arch, p: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, BlockCache]:
    """``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))``: one pre-norm block, (B, T, E) -> (B, T, E)."""
    h, ln_1 = norm(x, params, prefix + "ln_1", arch)
    a, attn = attention_forward_block(h, params, prefix, arch, p, rng)
    x = x + a
    h, ln_2 = norm(x, params, prefix + "ln_2", arch)
    m, mlp = mlp_forward(h, params, prefix, arch, p, rng)
    return x + m, BlockCache(ln_1, attn, ln_2, mlp)


def block_backward(dout: np.ndarray, cache: BlockCache, grads: dict, prefix: str, arch: Arch,
                   p: float) -> np.ndarray:
    """Both residuals: the gradient passes the skip unchanged and adds the branch's.

    With ``u = x + attn(ln_1(x))`` and ``y = u + mlp(ln_2(u))``::

        du = dy + ln_2^T(mlp^T(dy))          (B, T, E)
        dx = du + ln_1^T(attn^T(du))         (B, T, E)

    See docs/derivations.md, section "GPT: residual blocks and the tied head".
    """
    dh = mlp_backward(dout, cache.mlp, grads, prefix, p)
    dx = dout + norm_grad(dh, cache.ln_2, grads, prefix + "ln_2")
    dh = attention_backward_block(dx, cache.attn, grads, prefix, arch, p)
    return dx + norm_grad(dh, cache.ln_1, grads, prefix + "ln_1")


def block_decode(x: np.ndarray, params: dict, prefix: str, arch: Arch, keys: np.ndarray, values: np.ndarray,
                 start: int, rng: np.random.Generator) -> np.ndarray:
    """The block on new positions ``start .. start + n - 1`` with this layer's cached keys and values.

    ``keys``, ``values`` (B, Hkv, block_size, D) hold the earlier positions in ``[:start]`` (after
    RoPE, at their own positions); the new ones are written after them. A single new query
    (n = 1) is the last position, so it may see every cached key: no mask. Several (a prompt,
    only from ``start = 0``) are causal among themselves. No dropout: decoding is inference.
    """
    h, _ = norm(x, params, prefix + "ln_1", arch)
    stop = start + x.shape[1]
    q, k, v, _ = qkv_heads(h, params, prefix, arch, np.arange(start, stop))
    keys[:, :, start:stop] = k
    values[:, :, start:stop] = v
    y, _ = attend(q, keys[:, :, :stop], values[:, :, :stop], q.shape[2] > 1, 0.0, rng)
    x = x + attention_output(y, params, prefix, 0.0, rng)[0]
    h, _ = norm(x, params, prefix + "ln_2", arch)
    return x + mlp_forward(h, params, prefix, arch, 0.0, rng)[0]

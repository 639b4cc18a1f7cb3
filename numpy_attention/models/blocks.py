"""The pieces of a nanoGPT block as forward/backward functions over the model's parameter dict.

A block is pre-LayerNorm with two residual branches::

    x = x + attn(ln_1(x))        attn: c_attn Linear(E, 3E) -> split q, k, v -> heads -> causal
                                       attention -> merge heads -> c_proj Linear(E, E) -> dropout
    x = x + mlp(ln_2(x))         mlp:  c_fc Linear(E, 4E) -> GELU -> c_proj Linear(4E, E) -> dropout

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

from typing import Any, NamedTuple

import numpy as np

from .. import functional as F
from ..functional.heads import merge_heads, split_heads
from ..kernels import attention_backward, attention_forward, linear_backward, linear_forward


def dropout(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p); returns the keep-mask."""
    if p == 0.0:
        return x, None
    keep = rng.random(x.shape) >= p
    return x * keep * x.dtype.type(1.0 / (1.0 - p)), keep


def dropout_grad(dout: np.ndarray, keep: np.ndarray | None, p: float) -> np.ndarray:
    """The backward of :func:`dropout`: the same mask and scale on the upstream gradient."""
    return dout if keep is None else dout * keep * dout.dtype.type(1.0 / (1.0 - p))


def accumulate(grads: dict[str, np.ndarray], name: str, grad: np.ndarray | None) -> None:
    if grad is not None:
        grads[name] += grad


def linear(x: np.ndarray, params: dict, name: str) -> tuple[np.ndarray, Any]:
    """``params[name.weight]``, ``params[name.bias]`` (if any) applied to x."""
    return linear_forward(x, params[name + ".weight"], params.get(name + ".bias"))


def linear_grad(dout: np.ndarray, cache: Any, grads: dict, name: str) -> np.ndarray:
    dx, dweight, dbias = linear_backward(dout, cache)
    accumulate(grads, name + ".weight", dweight)
    accumulate(grads, name + ".bias", dbias)
    return dx


def layer_norm(x: np.ndarray, params: dict, name: str) -> tuple[np.ndarray, Any]:
    return F.layer_norm_forward(x, params[name + ".weight"], params.get(name + ".bias"), 1e-5)


def layer_norm_grad(dout: np.ndarray, cache: Any, grads: dict, name: str) -> np.ndarray:
    dx, dweight, dbias = F.layer_norm_backward(dout, cache)
    accumulate(grads, name + ".weight", dweight)
    accumulate(grads, name + ".bias", dbias)
    return dx


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, is_causal: bool, dropout_p: float,
           rng: np.random.Generator) -> tuple[np.ndarray, Any]:
    """The one call of the attention pair: (B, H, L, D) queries against (B, H, S, D) keys and values."""
    return attention_forward(q, k, v, dropout_p=dropout_p, is_causal=is_causal, rng=rng)


class AttentionCache(NamedTuple):
    qkv: Any
    sdpa: Any
    proj: Any
    keep: np.ndarray | None


class MLPCache(NamedTuple):
    fc: Any
    gelu: Any
    proj: Any
    keep: np.ndarray | None


class BlockCache(NamedTuple):
    ln_1: Any
    attn: AttentionCache
    ln_2: Any
    mlp: MLPCache


def qkv_heads(h: np.ndarray, params: dict, prefix: str, n_head: int) -> tuple[np.ndarray, ...]:
    """c_attn, then q, k, v each split into heads: (B, T, E) -> three (B, H, T, D), and the linear's cache."""
    qkv, cache = linear(h, params, prefix + "attn.c_attn")
    q, k, v = np.split(qkv, 3, axis=-1)
    return split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head), cache


def attention_output(y: np.ndarray, params: dict, prefix: str, p: float, rng: np.random.Generator) -> tuple:
    """Merge the heads' outputs (B, H, T, D) -> (B, T, E), then c_proj and the residual dropout."""
    out, proj = linear(merge_heads(y), params, prefix + "attn.c_proj")
    out, keep = dropout(out, p, rng)
    return out, proj, keep


def attention_forward_block(h: np.ndarray, params: dict, prefix: str, n_head: int, p: float,
                            rng: np.random.Generator) -> tuple[np.ndarray, AttentionCache]:
    """Causal self-attention of nanoGPT's ``CausalSelfAttention`` (dropout p on the weights and the output)."""
    q, k, v, qkv = qkv_heads(h, params, prefix, n_head)
    y, sdpa = attend(q, k, v, True, p, rng)
    out, proj, keep = attention_output(y, params, prefix, p, rng)
    return out, AttentionCache(qkv, sdpa, proj, keep)


def attention_backward_block(dout: np.ndarray, cache: AttentionCache, grads: dict, prefix: str, n_head: int,
                             p: float) -> np.ndarray:
    dy = linear_grad(dropout_grad(dout, cache.keep, p), cache.proj, grads, prefix + "attn.c_proj")
    dq, dk, dv = attention_backward(split_heads(dy, n_head), cache.sdpa)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    return linear_grad(dqkv, cache.qkv, grads, prefix + "attn.c_attn")


def mlp_forward(h: np.ndarray, params: dict, prefix: str, p: float, rng: np.random.Generator) -> tuple:
    """nanoGPT's ``MLP``: c_fc (E -> 4E), exact GELU, c_proj (4E -> E), dropout."""
    a, fc = linear(h, params, prefix + "mlp.c_fc")
    g, gelu = F.gelu_forward(a)
    out, proj = linear(g, params, prefix + "mlp.c_proj")
    out, keep = dropout(out, p, rng)
    return out, MLPCache(fc, gelu, proj, keep)


def mlp_backward(dout: np.ndarray, cache: MLPCache, grads: dict, prefix: str, p: float) -> np.ndarray:
    """The MLP read backwards: dropout, c_proj, GELU, c_fc.

    ::

        dg = dropout^T(dout) W_proj          (B, T, 4E)
        da = dg * gelu'(a)                   (B, T, 4E)
        dh = da W_fc                         (B, T, E)

    See docs/derivations.md, section "GPT: residual blocks and the tied head".
    """
    dg = linear_grad(dropout_grad(dout, cache.keep, p), cache.proj, grads, prefix + "mlp.c_proj")
    da = F.gelu_backward(dg, cache.gelu)
    return linear_grad(da, cache.fc, grads, prefix + "mlp.c_fc")


def block_forward(x: np.ndarray, params: dict, prefix: str, n_head: int, p: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, BlockCache]:
    """``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))``: one pre-LayerNorm block, (B, T, E) -> (B, T, E)."""
    h, ln_1 = layer_norm(x, params, prefix + "ln_1")
    a, attn = attention_forward_block(h, params, prefix, n_head, p, rng)
    x = x + a
    h, ln_2 = layer_norm(x, params, prefix + "ln_2")
    m, mlp = mlp_forward(h, params, prefix, p, rng)
    return x + m, BlockCache(ln_1, attn, ln_2, mlp)


def block_backward(dout: np.ndarray, cache: BlockCache, grads: dict, prefix: str, n_head: int,
                   p: float) -> np.ndarray:
    """Both residuals: the gradient passes the skip unchanged and adds the branch's.

    With ``u = x + attn(ln_1(x))`` and ``y = u + mlp(ln_2(u))``::

        du = dy + ln_2^T(mlp^T(dy))          (B, T, E)
        dx = du + ln_1^T(attn^T(du))         (B, T, E)

    See docs/derivations.md, section "GPT: residual blocks and the tied head".
    """
    dh = mlp_backward(dout, cache.mlp, grads, prefix, p)
    dx = dout + layer_norm_grad(dh, cache.ln_2, grads, prefix + "ln_2")
    dh = attention_backward_block(dx, cache.attn, grads, prefix, n_head, p)
    return dx + layer_norm_grad(dh, cache.ln_1, grads, prefix + "ln_1")


def block_decode(x: np.ndarray, params: dict, prefix: str, n_head: int, keys: np.ndarray, values: np.ndarray,
                 start: int, rng: np.random.Generator) -> np.ndarray:
    """The block on new positions ``start .. start + n - 1`` with this layer's cached keys and values.

    ``keys``, ``values`` (B, H, block_size, D) hold the earlier positions in ``[:start]``; the new
    ones are written after them. A single new query (n = 1) is the last position, so it may see
    every cached key: no mask. Several (a prompt, only from ``start = 0``) are causal among
    themselves. No dropout: decoding is inference.
    """
    h, _ = layer_norm(x, params, prefix + "ln_1")
    q, k, v, _ = qkv_heads(h, params, prefix, n_head)
    stop = start + q.shape[2]
    keys[:, :, start:stop] = k
    values[:, :, start:stop] = v
    y, _ = attend(q, keys[:, :, :stop], values[:, :, :stop], q.shape[2] > 1, 0.0, rng)
    x = x + attention_output(y, params, prefix, 0.0, rng)[0]
    h, _ = layer_norm(x, params, prefix + "ln_2")
    return x + mlp_forward(h, params, prefix, 0.0, rng)[0]

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Checking your own layer with gradcheck
#
# Write a layer with a hand-derived backward, plant a bug in it, watch `gradcheck` find it (and
# say where), fix it. The layer: **attention pooling**, which turns a sequence of $T$ feature
# vectors into one by a learned softmax over the positions (a single query vector $w$):
#
# $$s = X w \quad (T), \qquad a = \operatorname{softmax}(s) \quad (T), \qquad y = a^\top X \quad (F)$$
#
# for each sequence $X$ $(T \times F)$ of a batch of $N$. It is built from the library's softmax
# pair (`numpy_attention.functional.softmax_forward` / `softmax_backward`), and it reads $X$
# twice, once in the scores and once in the weighted sum, which is where the bug will hide.

# %%
import numpy as np

import gradcheck
from numpy_attention.functional import softmax_backward, softmax_forward


def pool_forward(x, w):
    """x (N, T, F), w (F,) -> y (N, F)."""
    scores = x @ w                                   # (N, T)
    a, softmax_cache = softmax_forward(scores)       # (N, T), softmax over the positions
    y = np.einsum("nt,ntf->nf", a, x)                # (N, F)
    return y, (x, w, a, softmax_cache)


# %% [markdown]
# ## The backward, derived
#
# Reverse each line. From $y = a^\top X$: $da_t = dy \cdot X_t$ $(T)$, and the weighted sum's own
# share of $dX$ is $a_t\, dy$ $(T \times F)$. The softmax pair turns $da$ into $ds$. From $s = Xw$:
# $dw = \sum_{n, t} ds_t X_t$ $(F)$, and the scores' share of $dX$ is $ds_t\, w$ $(T \times F)$.
# **$X$ is used twice, so it receives the sum of both shares.** First, a version that forgets that:

# %%
def pool_backward_wrong(dy, cache):
    x, w, a, softmax_cache = cache
    da = np.einsum("nf,ntf->nt", dy, x)              # (N, T)
    ds = softmax_backward(da, softmax_cache)         # (N, T)
    dw = np.einsum("nt,ntf->f", ds, x)               # (F,)
    dx = a[..., None] * dy[:, None, :]               # WRONG: only the weighted sum's share
    return dx, dw


# %% [markdown]
# ## The check
#
# `gradcheck.check(forward, backward, inputs)` draws a random upstream gradient `dout`, runs the
# backward once, and compares every element of every gradient with central finite differences of
# $\sum \text{forward}(x) \odot \text{dout}$. Use float64 and random inputs (at a special point,
# such as $w = 0$, some wrong backwards agree by luck: with $w = 0$ the missing term is zero).

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 5, 4))
w = rng.standard_normal(4)

report = gradcheck.check(pool_forward, pool_backward_wrong, (x, w))
print(report)
assert not report.passed

# %% [markdown]
# The report points at the culprit: the `x` row fails (with the count of failing elements, the
# worst index, and the analytic and numeric values there) while the `w` row passes, so the bug is
# in $dX$ alone. `report.failures` gives the same to a program.

# %%
print([row.name for row in report.failures])
assert [row.name for row in report.failures] == ["x"]

# %% [markdown]
# The fast mode checks a few random directions per tensor instead of every element (two forward
# calls per direction, whatever the tensor's size): cheaper, and it catches the bug too.

# %%
fast = gradcheck.check(pool_forward, pool_backward_wrong, (x, w), fast=True)
print(fast.summary())
assert not fast.passed

# %% [markdown]
# ## The fix
#
# Add the scores' share, $ds_t\, w$, to $dX$:
#
# $$dX_t = a_t\, dy + ds_t\, w \qquad (T \times F)$$

# %%
def pool_backward(dy, cache):
    x, w, a, softmax_cache = cache
    da = np.einsum("nf,ntf->nt", dy, x)
    ds = softmax_backward(da, softmax_cache)
    dw = np.einsum("nt,ntf->f", ds, x)
    dx = a[..., None] * dy[:, None, :] + ds[..., None] * w   # both uses of x
    return dx, dw


report = gradcheck.check(pool_forward, pool_backward, (x, w))
print(report)
assert report.passed

# %% [markdown]
# ## Large values, and float32
#
# Check again where the softmax saturates (scores in the tens): the gradients get tiny and
# lopsided, which is where many backwards break. And in float32 the check still runs, with looser
# defaults and a note saying float64 is the dtype to trust.

# %%
large = gradcheck.check(pool_forward, pool_backward, (10 * x, w))
print(large.summary())
assert large.passed

single = gradcheck.check(pool_forward, pool_backward, (x.astype(np.float32), w.astype(np.float32)))
print(single)
assert single.passed and single.notes

# %% [markdown]
# ## The forward itself: a reference
#
# Finite differences only say that the backward differentiates the forward, whatever the forward
# computes. With torch installed, `gradcheck.compare_with_torch` also compares the output (and the
# gradients) with the same function written in torch and differentiated by autograd.

# %%
try:
    import torch
except ImportError:
    torch = None
    from numpy_attention.optional import TORCH_HINT

    print(f"torch is not installed: {TORCH_HINT}, to compare with it")

if torch is not None:
    def torch_pool(x, w):
        a = torch.softmax(x @ w, dim=-1)
        return torch.einsum("nt,ntf->nf", a, x)

    reference = gradcheck.compare_with_torch(pool_forward, pool_backward, torch_pool, (x, w))
    print(reference)
    assert reference.passed

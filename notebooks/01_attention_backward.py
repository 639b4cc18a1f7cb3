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
# # The attention backward, step by step
#
# Scaled dot-product attention is three lines of math. This notebook runs them forward and then
# backward by hand, one equation per line, in plain NumPy, and checks every result against the
# library's `numpy_attention.functional.attention_forward` / `attention_backward`. The
# derivation of each step is in `docs/derivations.md`, section "Scaled dot-product attention".
#
# For one (batch, head) slice with queries $Q$ $(L \times E)$, keys $K$ $(S \times E)$, values
# $V$ $(S \times E_v)$, scale $c = 1/\sqrt{E}$ and a mask $M$ (0 where a query may attend, $-\infty$
# where it may not):
#
# $$S = c\, Q K^\top + M, \qquad P = \operatorname{softmax}(S), \qquad O = P V$$
#
# We use a batch of 2, 3 heads, $L = 5$ queries and $S = 7$ keys: with $L \ne S$ a wrong transpose
# fails on the shapes at once.

# %%
import numpy as np

from numpy_attention.functional import attention_backward, attention_forward

rng = np.random.default_rng(0)
B, H, L, S, E, Ev = 2, 3, 5, 7, 4, 6
Q = rng.standard_normal((B, H, L, E))
K = rng.standard_normal((B, H, S, E))
V = rng.standard_normal((B, H, S, Ev))
c = 1.0 / np.sqrt(E)

# A boolean mask, True = may attend (torch's SDPA convention), broadcast over batch and heads.
# Query 4 may attend to nothing: a fully masked row.
allowed = rng.random((L, S)) < 0.7
allowed[:, 0] = True
allowed[4] = False
print(allowed.astype(int))

# %% [markdown]
# ## Forward
#
# Three lines, the softmax written out: subtract the row maximum $m$ (it changes nothing and keeps
# `exp` in $(0, 1]$), exponentiate, divide by the row sum. A row whose keys are all masked has
# $m = -\infty$; the library defines its probabilities as 0 (its true derivative is 0), so we shift
# such a row by 0 and divide only where the sum is positive.

# %%
scores = c * Q @ K.swapaxes(-1, -2) + np.where(allowed, 0.0, -np.inf)  # S (B, H, L, S)
m = scores.max(axis=-1, keepdims=True)                                 # (B, H, L, 1)
m = np.where(np.isneginf(m), 0.0, m)
e = np.exp(scores - m)
row_sum = e.sum(axis=-1, keepdims=True)
P = np.divide(e, row_sum, out=np.zeros_like(e), where=row_sum > 0)     # (B, H, L, S)
O = P @ V                                                              # (B, H, L, Ev)

out, cache = attention_forward(Q, K, V, attn_mask=allowed)
print(f"largest |O - out| = {np.abs(O - out).max():.1e}")
print(f"largest |P - cache.weights| = {np.abs(P - cache.weights).max():.1e}")
print("fully masked query 4 gives output", O[0, 0, 4])
assert np.allclose(O, out, rtol=1e-13, atol=1e-15) and np.allclose(P, cache.weights, rtol=1e-13, atol=1e-15)
assert np.all(O[..., 4, :] == 0)

# %% [markdown]
# ## Backward
#
# The backward receives $dO = \partial \mathcal{L} / \partial O$ and walks the forward in reverse.
# A random upstream gradient (never all ones: it would hide mistakes that a sum cancels).
#
# **1. $O = PV$:** each factor's gradient is the upstream gradient times the other factor,
# transposed to fit.
#
# $$dV = P^\top dO \quad (S \times E_v), \qquad dP = dO\, V^\top \quad (L \times S)$$

# %%
dO = rng.standard_normal(O.shape)
dV = P.swapaxes(-1, -2) @ dO   # (B, H, S, Ev)
dP = dO @ V.swapaxes(-1, -2)   # (B, H, L, S)

# %% [markdown]
# **2. $P = \operatorname{softmax}(S)$, row by row.** The Jacobian of a softmax row is
# $\operatorname{diag}(p) - p p^\top$; contracted with $dP$ it gives
#
# $$dS = P \odot \big(dP - \operatorname{rowsum}(dP \odot P)\big) \qquad (L \times S)$$
#
# The mask is a constant added to the scores: the gradient passes through it unchanged.

# %%
D = (dP * P).sum(axis=-1, keepdims=True)   # rowsum(dP * P), (B, H, L, 1)
dS = P * (dP - D)                           # (B, H, L, S)

# %% [markdown]
# **3. $S = c\, Q K^\top$:**
#
# $$dQ = c\, dS\, K \quad (L \times E), \qquad dK = c\, dS^\top Q \quad (S \times E)$$

# %%
dQ = c * dS @ K                  # (B, H, L, E)
dK = c * dS.swapaxes(-1, -2) @ Q # (B, H, S, E)

# %% [markdown]
# ## Against the library

# %%
dq, dk, dv = attention_backward(dO, cache)
for name, ours, library in (("dQ", dQ, dq), ("dK", dK, dk), ("dV", dV, dv)):
    error = np.abs(ours - library).max() / np.abs(library).max()
    print(f"{name} {ours.shape}: largest difference / largest entry = {error:.1e}")
    assert ours.shape == library.shape and error < 1e-12

# %% [markdown]
# ## Three facts worth seeing
#
# **Masked keys get no gradient.** $dP$ knows nothing of the mask (it is dense), but $dS$ is a
# multiple of $P$, so it is 0 wherever $P$ is, and a fully masked row gets no gradient at all.
#
# **Every row of $dS$ sums to 0**, because adding a constant to a whole row of scores does not
# change the softmax.
#
# **The $D$ identity:** $\operatorname{rowsum}(dP \odot P) = \operatorname{rowsum}(dO \odot O)$.
# The right side needs only the output and its gradient, $L \times E_v$ numbers instead of an
# $L \times S$ product: this is what lets the tiled ("flash") backward run without storing $P$
# (next notebook).

# %%
blocked = np.broadcast_to(~allowed, dS.shape)
print("largest |dP| on blocked keys:", np.abs(dP[blocked]).max())
print("largest |dS| on blocked keys:", np.abs(dS[blocked]).max())
print("largest |row sum of dS|:     ", np.abs(dS.sum(axis=-1)).max())
print("largest |rowsum(dP*P) - rowsum(dO*O)|:", np.abs(D - (dO * O).sum(axis=-1, keepdims=True)).max())
assert np.all(dS[blocked] == 0) and np.all(dQ[..., 4, :] == 0)
assert np.allclose(dS.sum(axis=-1), 0, atol=1e-14)
assert np.allclose(D, (dO * O).sum(axis=-1, keepdims=True), rtol=1e-12, atol=1e-14)

# %% [markdown]
# ## What a gradient check does, by hand
#
# A derivative is what a loss does when an input moves. Take the scalar
# $f(Q) = \sum O(Q) \odot dO$, whose gradient with respect to $Q$ is exactly $dQ$ (that is what
# "$dO$ is the upstream gradient" means), nudge one element of $Q$ by $\pm\varepsilon$ and compare
# the central difference $(f(Q + \varepsilon) - f(Q - \varepsilon)) / 2\varepsilon$ with that element
# of $dQ$. `gradcheck.check` does this for every element of every input (notebook 03).

# %%
def f(q):
    return np.sum(attention_forward(q, K, V, attn_mask=allowed)[0] * dO)


index, eps = (1, 2, 3, 1), 1e-6
nudge = np.zeros_like(Q)
nudge[index] = eps
numeric = (f(Q + nudge) - f(Q - nudge)) / (2 * eps)
print(f"dQ{index}: analytic {dQ[index]:.10f}, numeric {numeric:.10f}")
assert abs(numeric - dQ[index]) < 1e-8

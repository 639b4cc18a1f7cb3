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
# # The online softmax and the tiled ("flash") backward
#
# The dense attention pair of notebook 01 keeps the $L \times S$ weights $P$ for its backward:
# at $L = S = 16384$ in float32 that is 1 GiB per head. The tiled algorithm computes the same
# output and the same gradients holding one $B_q \times B_k$ tile at a time, so its extra memory
# grows linearly in $L$ and $S$. This notebook builds it block by block and compares it with
# `flash_attention_forward` / `flash_attention_backward` and with the dense pair. The derivation
# is in `docs/derivations.md`, section "Tiled attention".

# %%
import tracemalloc

import numpy as np

from numpy_attention.functional import (
    attention_backward,
    attention_forward,
    flash_attention_backward,
    flash_attention_forward,
)

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The online softmax, one row
#
# Let the scores $s_j$ of one query arrive in blocks. Keep, over the keys seen so far, the running
# maximum $m$, the sum $\ell = \sum_j e^{s_j - m}$ and the unnormalised output
# $a = \sum_j e^{s_j - m} v_j$. When a block raises the maximum from $m$ to $m'$, every old term
# was measured against $m$; one factor $e^{m - m'} \le 1$ moves them all to the new reference:
#
# $$
# \ell \leftarrow e^{m - m'} \ell + \sum_{j \in J} e^{s_j - m'}, \qquad
# a \leftarrow e^{m - m'} a + \sum_{j \in J} e^{s_j - m'} v_j
# $$
#
# After the last block, $O = a / \ell$: exactly $\operatorname{softmax}(s) V$.

# %%
s = rng.standard_normal(20) * 3        # the scores of one query against 20 keys
values = rng.standard_normal((20, 4))  # their values

m, ell, a = -np.inf, 0.0, np.zeros(4)
for start in range(0, 20, 6):          # blocks of 6 keys (the last one shorter)
    block = slice(start, start + 6)
    new_m = max(m, s[block].max())
    correction = np.exp(m - new_m)     # 0 at the first block, where m = -inf
    p = np.exp(s[block] - new_m)
    ell = correction * ell + p.sum()
    a = correction * a + p @ values[block]
    m = new_m
    print(f"keys {start:2d}..{min(start + 6, 20) - 1:2d}: m = {m:6.3f}, l = {ell:8.4f}")

weights = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
print("online a / l:  ", a / ell)
print("softmax(s) @ V:", weights @ values)
assert np.allclose(a / ell, weights @ values, rtol=1e-13, atol=1e-15)

# %% [markdown]
# ## 2. The tiled forward
#
# The same update for a block of $B_q$ query rows at once. Besides the output, keep one number per
# query row for the backward, the log-sum-exp $\operatorname{lse} = m + \log \ell$, since then
# $P_{ij} = e^{S_{ij} - \operatorname{lse}_i}$ can be recomputed for any tile. With `is_causal`,
# query $i$ sees keys $j \le i$: a tile wholly above the diagonal contributes nothing and is
# skipped; a tile the diagonal crosses gets the mask.

# %%
def tiled_forward(q, k, v, block_q, block_k, is_causal=False):
    """One head: q (L, E), k (S, E), v (S, Ev). Returns O (L, Ev) and lse (L,)."""
    L, S = q.shape[0], k.shape[0]
    c = 1.0 / np.sqrt(q.shape[1])
    out, lse = np.zeros((L, v.shape[1])), np.zeros(L)
    for i0 in range(0, L, block_q):
        rows = slice(i0, min(i0 + block_q, L))
        m = np.full((rows.stop - i0, 1), -np.inf)
        ell = np.zeros((rows.stop - i0, 1))
        acc = np.zeros((rows.stop - i0, v.shape[1]))
        for j0 in range(0, S, block_k):
            if is_causal and j0 > rows.stop - 1:
                break                                             # above the diagonal: P = 0
            cols = slice(j0, min(j0 + block_k, S))
            S_ij = c * q[rows] @ k[cols].T                        # (Bq, Bk): the only tile-sized arrays
            if is_causal:
                S_ij = np.where(np.arange(j0, cols.stop) <= np.arange(i0, rows.stop)[:, None], S_ij, -np.inf)
            new_m = np.maximum(m, S_ij.max(axis=1, keepdims=True))
            P_ij = np.exp(S_ij - new_m)
            correction = np.exp(m - new_m)
            ell = correction * ell + P_ij.sum(axis=1, keepdims=True)
            acc = correction * acc + P_ij @ v[cols]
            m = new_m
        out[rows] = acc / ell
        lse[rows] = (m + np.log(ell))[:, 0]
    return out, lse


L, S, E = 100, 90, 16
q, k, v = (rng.standard_normal((n, E)) for n in (L, S, S))
for is_causal in (False, True):
    O_tiled, lse = tiled_forward(q, k, v, block_q=32, block_k=24, is_causal=is_causal)
    O_dense, _ = attention_forward(q, k, v, is_causal=is_causal)
    O_flash, _ = flash_attention_forward(q, k, v, is_causal=is_causal, block_size=(32, 24))
    print(f"is_causal={is_causal}: |tiled - dense| = {np.abs(O_tiled - O_dense).max():.1e}, "
          f"|tiled - flash| = {np.abs(O_tiled - O_flash).max():.1e}")
    assert np.allclose(O_tiled, O_dense, rtol=1e-12, atol=1e-14)
    assert np.allclose(O_tiled, O_flash, rtol=1e-12, atol=1e-14)

# %% [markdown]
# ## 3. The tiled backward
#
# The dense backward needs $\operatorname{rowsum}(dP \odot P)$ before any $dS$; the $D$ identity of
# notebook 01 gives it from the output alone, $D = \operatorname{rowsum}(dO \odot O)$. With $D$
# known, every gradient is a sum of per-tile terms. For each tile, recompute $P$ from the stored
# lse, then
#
# $$
# dV_J \mathrel{+}= P_{IJ}^\top dO_I, \quad dP_{IJ} = dO_I V_J^\top, \quad
# dS_{IJ} = P_{IJ} \odot (dP_{IJ} - D_I), \quad
# dQ_I \mathrel{+}= c\, dS_{IJ} K_J, \quad dK_J \mathrel{+}= c\, dS_{IJ}^\top Q_I
# $$

# %%
def tiled_backward(dO, q, k, v, out, lse, block_q, block_k, is_causal=False):
    """The gradients of tiled_forward, tile by tile, from O and lse alone."""
    L, S = q.shape[0], k.shape[0]
    c = 1.0 / np.sqrt(q.shape[1])
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    D = (dO * out).sum(axis=1, keepdims=True)                    # (L, 1): rowsum(dO * O)
    for i0 in range(0, L, block_q):
        rows = slice(i0, min(i0 + block_q, L))
        for j0 in range(0, S, block_k):
            if is_causal and j0 > rows.stop - 1:
                break
            cols = slice(j0, min(j0 + block_k, S))
            S_ij = c * q[rows] @ k[cols].T
            if is_causal:
                S_ij = np.where(np.arange(j0, cols.stop) <= np.arange(i0, rows.stop)[:, None], S_ij, -np.inf)
            P_ij = np.exp(S_ij - lse[rows, None])                 # recomputed, never stored
            dv[cols] += P_ij.T @ dO[rows]
            dP_ij = dO[rows] @ v[cols].T
            dS_ij = P_ij * (dP_ij - D[rows])
            dq[rows] += c * dS_ij @ k[cols]
            dk[cols] += c * dS_ij.T @ q[rows]
    return dq, dk, dv


dO = rng.standard_normal((L, E))
for is_causal in (False, True):
    O_tiled, lse = tiled_forward(q, k, v, 32, 24, is_causal)
    ours = tiled_backward(dO, q, k, v, O_tiled, lse, 32, 24, is_causal)
    dense = attention_backward(dO, attention_forward(q, k, v, is_causal=is_causal)[1])
    flash = flash_attention_backward(dO, flash_attention_forward(q, k, v, is_causal=is_causal, block_size=(32, 24))[1])
    for name, a, b, f in zip(("dQ", "dK", "dV"), ours, dense, flash):
        print(f"is_causal={is_causal} {name}: |tiled - dense| = {np.abs(a - b).max():.1e}, "
              f"|tiled - flash| = {np.abs(a - f).max():.1e}")
        assert np.allclose(a, b, rtol=1e-12, atol=1e-13) and np.allclose(a, f, rtol=1e-12, atol=1e-13)

# %% [markdown]
# The block sizes change nothing but rounding: any positive sizes, down to one query by one key.

# %%
for block_q, block_k in ((1, 1), (7, 64), (100, 90)):
    O_tiled, lse = tiled_forward(q, k, v, block_q, block_k, is_causal=True)
    dq_tiled = tiled_backward(dO, q, k, v, O_tiled, lse, block_q, block_k, is_causal=True)[0]
    print(f"blocks {block_q} x {block_k}: |dQ - dense dQ| = {np.abs(dq_tiled - dense[0]).max():.1e}")
    assert np.allclose(dq_tiled, dense[0], rtol=1e-12, atol=1e-13)

# %% [markdown]
# ## 4. Memory: linear, not quadratic
#
# Measure the peak memory that forward + backward allocate above their inputs (Python's
# `tracemalloc` sees NumPy's allocations) for growing $L = S$, one head, $E = 32$, float32. The
# dense pair holds the $L \times S$ weights (4 bytes each), so its memory grows about 4x when $L$
# doubles; the tiled pair holds $O$, the lse and one tile, so its memory grows about 2x.

# %%
def peak_bytes(forward, backward, length):
    q, k, v, dout = np.random.default_rng(length).standard_normal((4, length, 32)).astype(np.float32)
    tracemalloc.start()
    out, cache = forward(q, k, v)
    grads = backward(dout, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del out, cache, grads
    return peak


lengths = (512, 1024, 2048)
dense_peaks = [peak_bytes(attention_forward, attention_backward, n) for n in lengths]
flash_peaks = [peak_bytes(lambda q, k, v: flash_attention_forward(q, k, v, block_size=128), flash_attention_backward, n)
               for n in lengths]
print(" L = S   dense MiB   tiled MiB   one L x S float32 matrix, MiB")
for n, dense_peak, flash_peak in zip(lengths, dense_peaks, flash_peaks):
    print(f"{n:6d}   {dense_peak / 2**20:9.2f}   {flash_peak / 2**20:9.2f}   {n * n * 4 / 2**20:9.2f}")
print(f"from L = 1024 to 2048: dense x{dense_peaks[-1] / dense_peaks[-2]:.1f}, "
      f"tiled x{flash_peaks[-1] / flash_peaks[-2]:.1f}")
assert all(peak >= n * n * 4 for n, peak in zip(lengths, dense_peaks))  # the dense pair holds P
assert flash_peaks[-1] < 2048 * 2048 * 4 / 8                           # the tiled pair never does
assert flash_peaks[-1] / flash_peaks[-2] < 2.3                          # and grows linearly

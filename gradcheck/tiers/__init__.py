"""The tiers of ``python -m gradcheck`` beyond the per-op entries: what a small, well-behaved input cannot show.

* :mod:`.tiles`: sizes spanning several tiles in every implementation, causal with small blocks;
* :mod:`.stress`: large scores and logits, large and infinite mask entries, all -inf rows, NaN placement,
  compared with torch (the SDPA MATH backend): torch only;
* :mod:`.dropout`: the mask is drawn, keeps about 1 - p, and the backward uses it;
* :mod:`.weights`: the returned attention weights against torch, causal weights beyond a tile exactly 0;
* :mod:`.mha_pairs`: every pair of MultiHeadAttention's options, as a covering array;
* :mod:`.optimizers`: each optimizer step for step against ``torch.optim``;
* :mod:`.edges`: the ends of an op's range (one kept target, all ignored, a negative ``padding_idx``, ...).
"""

from __future__ import annotations

from . import dropout, edges, mha_pairs, optimizers, stress, tiles, weights

TIER_ENTRIES = [*tiles.ENTRIES, *stress.ENTRIES, *dropout.ENTRIES, *weights.ENTRIES, *mha_pairs.ENTRIES,
                *optimizers.ENTRIES, *edges.ENTRIES]

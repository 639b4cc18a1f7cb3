"""Today's score options in the kernels: one call's checked options, applied tile by tile.

Both kernels (dense and flash) hold the options of a call in a :class:`ScoreOptions`
and ask it, for each tile of query rows by keys, which keys the rows can see
(:meth:`~ScoreOptions.key_range`, so the tiles outside the band are skipped) and
for the tile's modified, masked scores (:meth:`~ScoreOptions.modify`). The math
itself is the textbook's, called here, never re-derived:
:func:`~numpy_attention.functional.score_mods.score_mod_forward` (soft-cap, ALiBi),
:func:`~numpy_attention.functional.score_mods.visible` (causal, window) and
:func:`~numpy_attention.functional.attention.additive_mask` (M).

See docs/derivations.md, sections "Soft-capping", "ALiBi" and "Sliding window and
causal masks as a predicate".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..functional.attention import additive_mask
from ..functional.score_mods import ScoreModCache, key_band, score_mod_forward, visible


class ScoreOptions(NamedTuple):
    """The score options of one call, checked (``_args.check_score_options``), with its ``is_causal``."""

    softcap: float | None
    alibi_slopes: np.ndarray | None
    window: tuple | None
    sinks: np.ndarray | None
    query_offset: int
    is_causal: bool

    @property
    def given(self) -> bool:
        """Whether any option beyond torch's is given (else the kernels' plain paths run)."""
        return (self.softcap is not None or self.alibi_slopes is not None or self.window is not None
                or self.sinks is not None or self.query_offset != 0)

    @property
    def banded(self) -> bool:
        """Whether a positional mask (causal, window) limits the keys each query sees."""
        return self.is_causal or self.window is not None

    def query_positions(self, rows: slice) -> np.ndarray:
        """i, the positions of the queries ``rows`` among the keys: ``query_offset`` added."""
        return np.arange(rows.start, rows.stop) + self.query_offset

    def band(self, rows: slice) -> tuple[int, int]:
        """The smallest and largest key position any query of ``rows`` may see."""
        first, last = key_band(self.query_positions(rows), is_causal=self.is_causal, window=self.window)
        return int(first.min()), int(last.max())

    def key_range(self, rows: slice, num_keys: int) -> slice:
        """The keys some query of ``rows`` may see, within range(num_keys): an empty slice if none."""
        first, last = self.band(rows)
        start = min(max(first, 0), num_keys)
        return slice(start, max(start, min(last + 1, num_keys)))

    def modify(
        self, scores: np.ndarray, query_heads: slice, rows: slice, cols: slice, attn_mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, ScoreModCache | None]:
        """``mod(S) + M`` on one tile of scaled scores S (..., heads, rows, cols), and mod's cache.

        ``query_heads`` are the tile's heads among all Hq (for the ALiBi slopes); ``attn_mask``
        the tile of the call's mask, if any. mod's cache is None without soft-cap and ALiBi.
        """
        query_pos, key_pos = self.query_positions(rows), np.arange(cols.start, cols.stop)
        mod_cache = None
        if self.softcap is not None or self.alibi_slopes is not None:
            slopes = None if self.alibi_slopes is None else self.alibi_slopes[query_heads]
            scores, mod_cache = score_mod_forward(scores, query_pos, key_pos, softcap=self.softcap,
                                                  alibi_slopes=slopes)
        if self.banded:
            seen = visible(query_pos, key_pos, is_causal=self.is_causal, window=self.window)
            if attn_mask is not None or not seen.all():
                scores = scores + additive_mask(attn_mask, seen, scores.dtype)
        elif attn_mask is not None:
            scores = scores + additive_mask(attn_mask, np.True_, scores.dtype)
        return scores, mod_cache

"""Attention masks side by side: causal, padding, a custom window, and rows with nothing to attend to.

    python examples/masks.py [--outdir examples/figures]

Boolean masks follow torch's scaled_dot_product_attention: True = may attend.
The same queries and keys are masked four ways and the attention weights
drawn as heatmaps on one colour range, 0 to 1 (masks.png; blocked cells grey). The last mask, causal attention over a
left-padded sequence, leaves the first queries with no key at all: their
weights, output and gradient are 0, never NaN. The end contrasts that with a
textbook softmax (NaN) and with a finite "mask" of -1e9 (no mask at all).

See docs/derivations.md, section "Masked softmax and fully masked rows".
"""

from __future__ import annotations

import numpy as np
from _common import heatmap, parser, pyplot, save

from numpy_attention.functional import attention_backward, attention_forward, softmax_forward
from numpy_attention.functional.score_mods import visible

NUM_TOKENS, NUM_FEATURES = 6, 4
NUM_PADDING = 2  # padding tokens: at the end of the sequence, or at its start (left padding)
WINDOW = 1  # the local window: keys within WINDOW positions of the query, on either side


def masks() -> dict[str, np.ndarray]:
    """Name -> boolean mask (L, S) or (S,), True where the query may attend to the key."""
    positions = np.arange(NUM_TOKENS)
    causal = visible(positions, positions, is_causal=True)
    return {
        "causal": causal,
        "padding": positions < NUM_TOKENS - NUM_PADDING,  # (S,): broadcast over every query
        "window": np.abs(positions[:, None] - positions[None, :]) <= WINDOW,  # a custom local window
        "causal + left padding": causal & (positions >= NUM_PADDING),
    }


TITLES = {
    "causal": "causal: key j <= query i",
    "padding": f"padding: the last {NUM_PADDING} keys are padding",
    "window": f"window |i - j| <= {WINDOW} ({WINDOW} key left, {WINDOW} right)",
    "causal + left padding": f"causal + {NUM_PADDING} left-padding keys",
}


def draw(q: np.ndarray, k: np.ndarray, v: np.ndarray):
    """The four masks' weights on one colour range (0 to 1, one colour bar); blocked cells grey and
    blank; fully masked rows labelled."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.4), constrained_layout=True)
    for ax, (name, mask) in zip(axes.ravel(), masks().items()):
        _, cache = attention_forward(q, k, v, attn_mask=mask)
        blocked = ~np.broadcast_to(mask, cache.weights.shape)
        image = heatmap(ax, cache.weights, TITLES[name], "key", "query", vmin=0.0, vmax=1.0, blocked=blocked,
                        colorbar=False, fmt=".2f", fontsize=10)
        for row in np.flatnonzero(blocked.all(axis=1)):
            ax.text((NUM_TOKENS - 1) / 2, row, "no key: output 0, gradient 0", ha="center", va="center",
                    fontsize=10, color="black")
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (grey: blocked, not attended)")
    fig.suptitle(f"One boolean mask each (True = may attend), {NUM_TOKENS} queries x {NUM_TOKENS} keys")
    return fig


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    np.set_printoptions(precision=4, suppress=True)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((NUM_TOKENS, NUM_FEATURES)) for _ in range(3))
    dout = rng.standard_normal((NUM_TOKENS, NUM_FEATURES))

    plt = pyplot()
    for name, mask in masks().items():
        print(f"{name} weights:")
        print(attention_forward(q, k, v, attn_mask=mask)[1].weights)
    fig = draw(q, k, v)

    # Causal attention over a left-padded sequence: the first NUM_PADDING queries see only padding.
    mask = masks()["causal + left padding"]
    empty_rows = np.flatnonzero(~mask.any(axis=1))
    out, cache = attention_forward(q, k, v, attn_mask=mask)
    dq, dk, dv = attention_backward(dout, cache)
    print(f"fully masked query rows: {empty_rows.tolist()}")
    print("their output rows:")
    print(out[empty_rows])
    print("their dQ rows:")
    print(dq[empty_rows])
    everything = (out, dq, dk, dv, cache.weights)
    print(f"NaN anywhere in output, weights or gradients: {any(np.isnan(a).any() for a in everything)}")
    save(fig, args.outdir, "masks.png")
    plt.close(fig)

    # What the row would give without the library's convention.
    scores = q @ k.T / np.sqrt(NUM_FEATURES)
    masked_row = np.full(NUM_TOKENS, -np.inf)
    with np.errstate(invalid="ignore"):  # -inf - (-inf) is NaN: the point being made
        exps = np.exp(masked_row - masked_row.max())
        textbook = exps / exps.sum()
    print("textbook softmax of a fully masked row:")
    print(textbook[None])
    finite, _ = softmax_forward(scores[0] - 1e9)
    unmasked, _ = softmax_forward(scores[0])
    print("softmax of row 0 with every key 'masked' by -1e9:")
    print(finite[None])
    print("softmax of row 0 with no mask:")
    print(unmasked[None])


if __name__ == "__main__":
    main()

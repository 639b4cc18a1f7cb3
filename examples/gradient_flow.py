"""Where the gradient goes in one attention head: P, dP and dS side by side.

    python examples/gradient_flow.py [--outdir examples/figures]

One causal head over a few tokens, run forward and backward one formula at a
time with the library's pieces (docs/derivations.md, section "Scaled
dot-product attention"):

    S  = scale * Q K^T + mask     P = softmax(S)     O = P V
    dP = dO V^T                   dS = P * (dP - rowsum(dP * P))
    dQ = scale * dS K             dK = scale * dS^T Q              dV = P^T dO

and checked against attention_backward. The figure (gradient_flow.png) shows
that dP is dense, since it knows nothing of the mask, while dS is zero
wherever P is: blocked keys get no gradient. A query that sees a single key
(the first, under a causal mask) has a one-hot P row and gets no gradient at
all. Each row of dS sums to zero, and rowsum(dP * P) equals rowsum(dO * O),
the identity the tiled backward uses.
"""

from __future__ import annotations

import numpy as np
from _common import heatmap, parser, pyplot, save

from numpy_attention.functional import attention_backward, attention_forward, softmax_backward, softmax_forward
from numpy_attention.functional.attention import apply_mask, causal_mask

NUM_TOKENS, HEAD_DIM = 5, 4


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    np.set_printoptions(precision=4, suppress=True)
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((NUM_TOKENS, HEAD_DIM)) for _ in range(3))
    d_out = rng.standard_normal((NUM_TOKENS, HEAD_DIM))  # the upstream gradient dL/dO
    scale = 1.0 / np.sqrt(HEAD_DIM)
    mask = causal_mask(NUM_TOKENS, NUM_TOKENS)

    # Forward, one line of the derivation at a time.
    scores = apply_mask(scale * q @ k.T, mask)
    weights, softmax_cache = softmax_forward(scores)
    out = weights @ v
    # Backward, in reverse.
    d_weights = d_out @ v.T
    d_scores = softmax_backward(d_weights, softmax_cache)
    dq, dk, dv = scale * d_scores @ k, scale * d_scores.T @ q, weights.T @ d_out

    print("P = softmax(S):")
    print(weights)
    print("dP = dO V^T:")
    print(d_weights)
    print("dS = P * (dP - rowsum(dP * P)):")
    print(d_scores)
    print("row sums of dS:")
    print(d_scores.sum(axis=1)[None])
    print("rowsum(dP * P):")
    print((d_weights * weights).sum(axis=1)[None])
    print("D = rowsum(dO * O):")
    print((d_out * out).sum(axis=1)[None])
    blocked = ~mask
    print(f"largest |dP| on blocked keys: {np.abs(d_weights[blocked]).max():.4f}")
    print(f"largest |dS| on blocked keys: {np.abs(d_scores[blocked]).max():.4f}")
    print("dQ of query 0, which sees a single key:")
    print(dq[:1])

    _, cache = attention_forward(q, k, v, is_causal=True)
    for name, ours, library in zip(("dQ", "dK", "dV"), (dq, dk, dv), attention_backward(d_out, cache)):
        print(f"{name} step by step vs attention_backward: max |difference| = {np.abs(ours - library).max():.1e}")

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    heatmap(axes[0], weights, "P: attention weights", "key", "query")
    for ax, values, title in ((axes[1], d_weights, "dP = dO V^T (dense)"),
                              (axes[2], d_scores, "dS: zero where P is zero")):
        heatmap(ax, values, title, "key", "query", cmap="coolwarm", centered=True)
    save(fig, args.outdir, "gradient_flow.png")
    plt.close(fig)


if __name__ == "__main__":
    main()

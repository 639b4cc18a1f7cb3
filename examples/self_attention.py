"""The seed example: self-attention on three 4-dimensional tokens, forward and backward.

    python examples/self_attention.py [--outdir examples/figures]

The sample input is used as queries, keys and values at once. The forward
prints the attention output and weights and saves the weights as a heatmap;
the backward takes a fixed upstream gradient and prints dQ, dK and dV (and
dX = dQ + dK + dV, the gradient of the one input that fed all three).
"""

from __future__ import annotations

import numpy as np
from _common import heatmap, parser, pyplot, save

from numpy_attention.functional import attention_backward, attention_forward

SAMPLE_INPUT = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])

# A fixed upstream gradient dL/d(output): every entry different, so no symmetry hides a bug.
UPSTREAM_GRADIENT = np.array(
    [[0.1, -0.2, 0.3, 0.0],
     [-0.5, 0.4, 0.0, 0.2],
     [0.3, 0.1, -0.1, -0.4]]
)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    np.set_printoptions(precision=4, suppress=True)

    x = SAMPLE_INPUT
    output, cache = attention_forward(x, x, x)
    print("attention output:")
    print(output)
    print("attention weights:")
    print(cache.weights)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4))
    heatmap(ax, cache.weights, "Self-attention weights (softmax(QK^T/sqrt(d)))", "key token", "query token")
    save(fig, args.outdir, "self_attention_weights.png")
    plt.close(fig)

    dq, dk, dv = attention_backward(UPSTREAM_GRADIENT, cache)
    print("upstream gradient dOut:")
    print(UPSTREAM_GRADIENT)
    for name, grad in (("dQ", dq), ("dK", dk), ("dV", dv), ("dX = dQ + dK + dV", dq + dk + dv)):
        print(f"{name}:")
        print(grad)


if __name__ == "__main__":
    main()

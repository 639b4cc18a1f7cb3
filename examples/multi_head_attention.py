"""Multi-head self-attention on the seed's three 4-dimensional tokens: 2 heads of width 2.

    python examples/multi_head_attention.py [--outdir examples/figures]

The projections are initialised as torch does (xavier-uniform, zero biases)
from a generator seeded with SEED, so the printed numbers are reproducible.
With the tokens as they are, heads of width 2 see scores so small that every
head's weights are close to a uniform 1/3; the tokens are therefore scaled by
INPUT_SCALE = 2, and SEED = 126 picked (of the first 200 seeds) so that the two
heads attend visibly differently, which is what several heads are for. The
forward prints the output and each head's attention weights, and saves the
per-head maps as one PNG; the backward takes a fixed upstream gradient and
prints dX (one gradient: the input fed the queries, keys and values). With
torch installed, the same weights run through torch.nn.MultiheadAttention and
the largest relative differences are printed.
"""

from __future__ import annotations

import numpy as np
from _common import heatmap, parser, pyplot, save
from self_attention import SAMPLE_INPUT, UPSTREAM_GRADIENT

from numpy_attention import MultiHeadAttention
from numpy_attention.optional import TORCH_HINT

EMBED_DIM, NUM_HEADS, SEED, INPUT_SCALE = 4, 2, 126, 2.0


def draw(weights: np.ndarray):
    """Each head's (L, S) weights, one colour range (0 to 1) and one colour bar for all of them."""
    plt = pyplot()
    fig, axes = plt.subplots(1, NUM_HEADS, figsize=(4.2 * NUM_HEADS + 1.2, 4.2), constrained_layout=True)
    for head, ax in enumerate(axes):
        image = heatmap(ax, weights[head], f"head {head + 1} of {NUM_HEADS}", "key token", "query token",
                        vmin=0.0, vmax=1.0, colorbar=False, fmt=".2f", fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.85, label="attention weight")
    fig.suptitle("Multi-head self-attention weights per head, softmax(Q_h K_h^T / sqrt(head_dim))")
    return fig


def torch_parity(module: MultiHeadAttention, x: np.ndarray, dout: np.ndarray, ours: dict) -> dict | None:
    """Largest relative differences from torch.nn.MultiheadAttention, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    reference = module.to_torch()
    x_t = torch.tensor(x, requires_grad=True)
    out_t, weights_t = reference(x_t, x_t, x_t, average_attn_weights=False)
    out_t.backward(torch.tensor(dout))
    in_proj_grad = reference.in_proj_weight.grad.numpy()

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    q_k_v_grads = np.concatenate([module.grads[f"{name}_proj.weight"] for name in "qkv"])
    return {
        "output": rel(ours["output"], out_t.detach().numpy()),
        "weights": rel(ours["weights"], weights_t.detach().numpy()),
        "dX": rel(ours["dx"], x_t.grad.numpy()),
        "dW_qkv (in_proj_weight)": rel(q_k_v_grads, in_proj_grad),
        "dW_o (out_proj.weight)": rel(module.grads["out_proj.weight"], reference.out_proj.weight.grad.numpy()),
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    np.set_printoptions(precision=4, suppress=True)

    module = MultiHeadAttention(EMBED_DIM, NUM_HEADS, batch_first=True, rng=SEED)
    x = INPUT_SCALE * SAMPLE_INPUT[None].astype(np.float64)  # a batch of one: (1, 3, 4)
    output, weights = module(x, average_attn_weights=False)
    print("multi-head attention output:")
    print(output[0])
    for head in range(NUM_HEADS):
        print(f"head {head + 1} attention weights:")
        print(weights[0, head])

    plt = pyplot()
    fig = draw(weights[0])
    save(fig, args.outdir, "multi_head_attention_weights.png")
    plt.close(fig)

    dout = UPSTREAM_GRADIENT[None]
    dx = module.backward(dout)
    print("upstream gradient dOut:")
    print(dout[0])
    print("dX = dX_q + dX_k + dX_v:")
    print(dx[0])

    parity = torch_parity(module, x, dout, {"output": output, "weights": weights, "dx": dx})
    if parity is None:
        print(f"torch is not installed, so not compared: {TORCH_HINT}")
        return
    print("max relative difference from torch.nn.MultiheadAttention (float64, same weights):")
    for name, error in parity.items():
        print(f"  {name}: {error:.1e}")


if __name__ == "__main__":
    main()

"""Where the gradient goes in one attention head: P, dP and dS, read off the textbook pair as it runs.

    python examples/gradient_flow.py [--outdir examples/figures]

One causal head over a few tokens goes through the library's textbook pair,
``numpy_attention.functional.attention_forward`` / ``attention_backward``, whose
lines are the equations of docs/derivations.md, section "Scaled dot-product
attention"::

    S  = c Q K^T + M        P = softmax(S)          O = (P * Z) V
    dV = (P * Z)^T dO       dP = (dO V^T) * Z       D = rowsum(dO * O)
    dS = P * (dP - D)       dQ = c dS K             dK = c dS^T Q

The example does not compute them again: it reads the pair's own local
variables (S, P, dP, D, dS) when each function returns. The figure
(gradient_flow.png) shows that dP is dense, since it knows nothing of the mask,
while dS is zero wherever P is (grey: blocked keys), so blocked keys get no
gradient. A query that sees a single key (the first, under a causal mask) has a
one-hot P row and gets no gradient at all. Each row of dS sums to zero, and D
equals rowsum(dP * P): the identity both backwards use.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable

import numpy as np
from _common import parser, pyplot, save

from numpy_attention.functional import attention_backward, attention_forward

NUM_TOKENS, HEAD_DIM = 5, 4


def run_and_read_locals(function: Callable, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
    """``function(*args, **kwargs)`` and its local variables as it returned (read by a profile hook)."""
    code, seen = inspect.unwrap(function).__code__, {}

    def hook(frame, event, arg):
        if event == "return" and frame.f_code is code:
            seen.update(frame.f_locals)

    sys.setprofile(hook)
    try:
        result = function(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return result, seen


def printable(values: np.ndarray, digits: int = 4) -> str:
    """``values`` rounded, with no "-0.0000" for what rounds to zero."""
    return np.array2string(np.round(values, digits) + 0.0, precision=digits, suppress_small=True)


def cell_text(value: float) -> str:
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def draw(ax, values: np.ndarray, blocked: np.ndarray, title: str, limit: float, cmap: str) -> Any:
    """A heatmap with blocked cells grey and unlabelled, on the colour range [-limit, limit] (or [0, limit])."""
    colours = pyplot().get_cmap(cmap).copy()
    colours.set_bad("lightgrey")
    low = -limit if cmap == "coolwarm" else 0.0
    image = ax.imshow(np.ma.masked_where(blocked, values), cmap=colours, vmin=low, vmax=limit)
    for (i, j), value in np.ndenumerate(values):
        if not blocked[i, j]:
            dark = abs(value) > 0.6 * limit if low < 0 else value < 0.5 * limit
            ax.text(j, i, cell_text(value), ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    ax.set(title=title, xlabel="key", ylabel="query", xticks=range(values.shape[1]), yticks=range(values.shape[0]))
    return image


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((NUM_TOKENS, HEAD_DIM)) for _ in range(3))
    d_out = rng.standard_normal((NUM_TOKENS, HEAD_DIM))  # the upstream gradient dL/dO

    (out, cache), forward = run_and_read_locals(attention_forward, q, k, v, is_causal=True)
    (dq, dk, dv), backward = run_and_read_locals(attention_backward, d_out, cache)
    P, dP, dS = forward["P"], backward["dP"], backward["dS"]
    blocked = np.isneginf(forward["M"])

    for name, values in (("P = softmax(S)", P), ("dP = (dO V^T) * Z", dP), ("dS = P * (dP - D)", dS),
                         ("row sums of dS", dS.sum(axis=1)[None]), ("rowsum(dP * P)", (dP * P).sum(axis=1)[None]),
                         ("D = rowsum(dO * O)", backward["D"].T), ("dQ of query 0, which sees a single key", dq[:1])):
        print(f"{name}:")
        print(printable(values))
    print(f"largest |dP| on blocked keys: {np.abs(dP[blocked]).max():.4f}")
    print(f"largest |dS| on blocked keys: {np.abs(dS[blocked]).max():.4f}")
    print(f"the pair's output is O: max |difference| = {np.abs(out - forward['O']).max():.1e}")

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
    weights_image = draw(axes[0], P, blocked, "P: attention weights", 1.0, "viridis")
    gradient_limit = max(np.abs(dP).max(), np.abs(dS).max())  # one scale: dP and dS are compared
    draw(axes[1], dP, np.zeros_like(blocked), "dP = dO V^T: dense", gradient_limit, "coolwarm")
    gradient_image = draw(axes[2], dS, blocked, "dS = P * (dP - D): zero where P is", gradient_limit, "coolwarm")
    fig.colorbar(weights_image, ax=axes[0], shrink=0.8)
    fig.colorbar(gradient_image, ax=axes[1:], shrink=0.8, label="gradient (one scale for dP and dS)")
    fig.suptitle("One causal head: grey cells are blocked keys (P = 0, so dS = 0 there)")
    save(fig, args.outdir, "gradient_flow.png")
    plt.close(fig)


if __name__ == "__main__":
    main()

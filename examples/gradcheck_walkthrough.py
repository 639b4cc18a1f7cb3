"""Check a layer you wrote yourself: RMSNorm by hand, verified with gradcheck.

    python examples/gradcheck_walkthrough.py [--outdir examples/figures] [--no-torch]

1. the layer as a functional pair, forward next to backward;
2. ``gradcheck.check`` on it: it passes;
3. the same check on a backward with a classic mistake: it fails, and the
   report says which gradient and which element;
4. the fast mode (random directions) catches it too, in a handful of evaluations;
5. the layer as a Module with a learnable gain, checked with ``check_module``;
6. with torch installed, ``compare_with_torch`` against ``torch.nn.functional.rms_norm``.

Saves gradcheck_walkthrough.png: dx of the right backward (top) and of the wrong one (bottom),
analytic and numeric on one shared colour range, and their difference per element on one shared
log scale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from _common import heatmap, parser, pyplot, save

import gradcheck
import numpy_attention as na
from gradcheck.reference import torch_available
from numpy_attention.optional import TORCH_HINT

EPS = 1e-6


# --- 1. the layer: y = x / rms(x) * gain, rms(x) = sqrt(mean(x^2) + eps) over the last axis ----

class RMSNormCache(NamedTuple):
    normed: np.ndarray  # x / rms
    rms: np.ndarray  # (..., 1)
    gain: np.ndarray


def rms_norm_forward(x: np.ndarray, gain: np.ndarray) -> tuple[np.ndarray, RMSNormCache]:
    rms = np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS)
    normed = x / rms
    return normed * gain, RMSNormCache(normed, rms, gain)


def rms_norm_backward(dout: np.ndarray, cache: RMSNormCache) -> tuple[np.ndarray, np.ndarray]:
    """With n = x / rms and dn = dout * gain (rms depends on every x of its row)::

        dx    = (dn - n * mean(dn * n)) / rms
        dgain = sum over rows of dout * n
    """
    normed, rms, gain = cache
    d_normed = dout * gain
    dx = (d_normed - normed * np.mean(d_normed * normed, axis=-1, keepdims=True)) / rms
    dgain = (dout * normed).reshape(-1, gain.shape[0]).sum(axis=0)
    return dx, dgain


def rms_norm_backward_rms_held_constant(dout: np.ndarray, cache: RMSNormCache) -> tuple[np.ndarray, np.ndarray]:
    """The classic mistake: differentiate x / rms as if rms did not depend on x."""
    normed, rms, gain = cache
    dx = dout * gain / rms  # WRONG: misses - n * mean(dn * n) / rms
    dgain = (dout * normed).reshape(-1, gain.shape[0]).sum(axis=0)
    return dx, dgain


class RMSNorm(na.Module):
    """The pair as a Module with a learnable ``gain``, initialised to 1 as usual."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.add_param("gain", np.ones(features))

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, cache = rms_norm_forward(x, self.params["gain"])
        self.save_for_backward(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dgain = rms_norm_backward(dout, self.saved_cache())
        self.accumulate("gain", dgain)
        return dx


def step(title: str) -> None:
    print(f"\n=== {title}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--no-torch", action="store_true", help="skip step 6 even if torch is installed")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6))
    gain = rng.uniform(0.5, 1.5, 6)  # a random point: at gain = 1 a backward that forgot gain would pass
    step("1. the layer: rms_norm_forward / rms_norm_backward, y = x / sqrt(mean(x^2) + eps) * gain")
    print(f"x: {x.shape}, gain: {gain.shape}; the check draws a random upstream gradient dout (seed 0)")

    step("2. the correct backward: every element agrees with central differences")
    report = gradcheck.check(rms_norm_forward, rms_norm_backward, (x, gain))
    print(report)

    step("3. a backward that holds rms constant: the report names the gradient and the element")
    wrong = gradcheck.check(rms_norm_forward, rms_norm_backward_rms_held_constant, (x, gain))
    print(wrong)
    row = next(r for r in wrong.rows if r.status == "FAIL")
    print(f"-> {row.name!r} is wrong in {row.num_failed} of {row.num_checked} elements; worst at {row.worst_index}: "
          f"analytic {row.actual:.6f}, numeric {row.expected:.6f}. 'gain' is right: the bug is in dx alone.")

    step("4. fast mode: 4 random directions per tensor instead of every element")
    print(gradcheck.check(rms_norm_forward, rms_norm_backward_rms_held_constant, (x, gain), fast=True).summary())

    step("5. the Module: input gradient and every parameter (module.grads), module left as found")
    layer = RMSNorm(6)
    layer.params["gain"][:] = gain
    print(gradcheck.check_module(layer, x))

    step("6. against torch autograd")
    if args.no_torch:
        print("skipped (--no-torch)")
    elif torch_available():
        import torch

        def torch_rms_norm(x, gain):
            return torch.nn.functional.rms_norm(x, (x.shape[-1],), gain, eps=EPS)

        print(gradcheck.compare_with_torch(rms_norm_forward, rms_norm_backward, torch_rms_norm, (x, gain)))
    else:
        print(f"torch is not installed, so not compared: {TORCH_HINT}")

    fig = draw(x, gain, row.worst_index)
    save(fig, args.outdir, "gradcheck_walkthrough.png")
    pyplot().close(fig)


def draw(x: np.ndarray, gain: np.ndarray, worst_index: tuple):
    """dx of the right (top row) and the wrong (bottom row) backward, element by element: analytic and
    numeric on one colour range, |analytic - numeric| on one log scale, the worst element circled."""
    from matplotlib.colors import LogNorm

    _, cache = rms_norm_forward(x, gain)
    dout = np.random.default_rng(0).standard_normal(x.shape)  # the check's dout (seed=0)
    numeric = gradcheck.numerical_gradients(lambda x: rms_norm_forward(x, gain)[0], [x], dout)[0]
    versions = (("right backward", rms_norm_backward(dout, cache)[0]),
                ("wrong: rms held constant", rms_norm_backward_rms_held_constant(dout, cache)[0]))
    limit = max(np.abs(numeric).max(), *(np.abs(analytic).max() for _, analytic in versions))
    differences = [np.abs(analytic - numeric) for _, analytic in versions]
    floor = 1e-12  # below any float64 difference of interest; keeps exact zeros on the log scale
    norm = LogNorm(vmin=floor, vmax=max(d.max() for d in differences))

    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), constrained_layout=True)
    for (name, analytic), difference, (ax_a, ax_n, ax_d) in zip(versions, differences, axes):
        values = heatmap(ax_a, analytic, "analytic dx", "feature", f"{name}\nrow", annotate=False,
                         cmap="coolwarm", vmin=-limit, vmax=limit, colorbar=False)
        heatmap(ax_n, numeric, "numeric dx", "feature", "", annotate=False,
                cmap="coolwarm", vmin=-limit, vmax=limit, colorbar=False)
        errors = ax_d.imshow(np.maximum(difference, floor), cmap="magma", norm=norm)
        ax_d.set_title(f"|analytic - numeric|, max {difference.max():.0e}")
        ax_d.set_xlabel("feature")
        ax_d.set_xticks(range(x.shape[1]))
        ax_d.set_yticks(range(x.shape[0]))
    axes[1, 2].scatter([worst_index[1]], [worst_index[0]], marker="o", s=260, facecolors="none",
                       edgecolors="cyan", linewidths=2)
    axes[1, 2].set_title(f"|analytic - numeric|, max {differences[1].max():.1f}\nworst element {worst_index} circled")
    fig.colorbar(values, ax=axes[:, :2], shrink=0.8, label="dx (one colour range for all four)")
    fig.colorbar(errors, ax=axes[:, 2], shrink=0.8, label="|difference| (one log scale)")
    fig.suptitle("gradcheck on a hand-written RMSNorm: dx of the right backward (top) and a wrong one (bottom)")
    return fig


if __name__ == "__main__":
    main()

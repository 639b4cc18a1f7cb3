"""What every example shares: the ``--outdir`` option and a headless matplotlib."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

DEFAULT_OUTDIR = Path(__file__).resolve().parent / "figures"


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--outdir`` (where the PNGs go)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR, help="folder for the PNG figures")
    return p


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, or a clear message on what to install."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit("this example draws figures: pip install 'numpy_attention[plot]'") from err
    return plt


def heatmap(ax, values, title: str, xlabel: str, ylabel: str, annotate: bool = True, cmap: str = "viridis",
            centered: bool = False):
    """Draw ``values`` as a heatmap with a colorbar and, if asked, the numbers in the cells.

    ``centered=True`` (for gradients, with a diverging ``cmap``) puts 0 in the middle of the colors.
    """
    limit = np.abs(values).max() if centered else None
    image = ax.imshow(values, cmap=cmap, vmin=None if limit is None else -limit, vmax=limit)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    if annotate:
        middle = (values.max() + values.min()) / 2
        for (i, j), value in np.ndenumerate(values):
            light_cell = abs(value) < 0.6 * limit if centered else value > middle
            ax.text(j, i, f"{value:.4f}", ha="center", va="center",
                    color="black" if light_cell else "white", fontsize=9)
    return image


def save(fig, outdir: Path, name: str) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"saved {path}")
    return path

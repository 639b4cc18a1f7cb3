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


BLOCKED_COLOUR = "lightgrey"  # masked-out cells, in every figure


def cell_text(value: float, fmt: str) -> str:
    """``value`` formatted, with a rounded-away sign dropped: never "-0.0000"."""
    text = format(value, fmt)
    return format(0.0, fmt) if float(text) == 0 else text


def heatmap(ax, values, title: str, xlabel: str, ylabel: str, annotate: bool = True, cmap: str = "viridis",
            centered: bool = False, *, vmin: float | None = None, vmax: float | None = None,
            blocked: np.ndarray | None = None, colorbar: bool = True, fmt: str = ".4f", fontsize: float = 9):
    """Draw ``values`` as a heatmap with a colorbar and, if asked, the numbers in the cells.

    ``centered=True`` (for gradients, with a diverging ``cmap``) puts 0 in the middle of the colors.
    ``vmin`` / ``vmax`` fix the colour range (give panels that are compared the same one);
    ``blocked`` (bool, the shape of ``values``) draws those cells grey, without a number.
    """
    limit = np.abs(values).max() if centered else None
    if limit is not None:
        vmin, vmax = -limit if vmin is None else vmin, limit if vmax is None else vmax
    colours = matplotlib_colormap(cmap)
    shown = values if blocked is None else np.ma.masked_where(blocked, values)
    image = ax.imshow(shown, cmap=colours, vmin=vmin, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    if annotate:
        low, high = image.get_clim()
        middle = (low + high) / 2
        for (i, j), value in np.ndenumerate(values):
            if blocked is not None and blocked[i, j]:
                continue
            light_cell = abs(value) < 0.6 * limit if centered else value > middle
            ax.text(j, i, cell_text(value, fmt), ha="center", va="center",
                    color="black" if light_cell else "white", fontsize=fontsize)
    return image


def matplotlib_colormap(name: str):
    """The named colormap with masked (blocked) cells in ``BLOCKED_COLOUR``."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=BLOCKED_COLOUR)


def save(fig, outdir: Path, name: str) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"saved {path}")
    return path

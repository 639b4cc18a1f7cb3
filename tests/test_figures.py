"""The README's figures, drawn by the examples' own drawing functions and measured (issue 16, item 7).

Each figure must be readable at the README's width (about 800 px), share one colour range where
panels are compared, and say what it shows; no label may sit on another panel or colour bar.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers.example_runner import load_example

pytest.importorskip("matplotlib", reason="the figures are drawn with matplotlib: pip install matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

DPI = 120  # what examples/_common.save writes
README_WIDTH = 800


def rendered(fig: Figure) -> Figure:
    fig.set_dpi(DPI)
    fig.canvas.draw()
    return fig


def labels_and_panels_collide(fig: Figure) -> list[str]:
    """Titles and axis labels that overlap another panel (colour bars included) or another label."""
    renderer = fig.canvas.get_renderer()
    labels = []
    for ax in fig.axes:
        for kind, text in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            if text.get_text() and text.get_visible():
                labels.append((ax, f"{kind} {text.get_text()!r}", text.get_window_extent(renderer)))
    problems = []
    for ax, name, box in labels:
        for other in fig.axes:
            if other is not ax and box.overlaps(other.get_window_extent(renderer)):
                problems.append(f"{name} overlaps the panel titled {other.get_title()!r} / {other.get_ylabel()!r}")
    for (_, a, box_a), (_, b, box_b) in itertools.combinations(labels, 2):
        if box_a.overlaps(box_b):
            problems.append(f"{a} overlaps {b}")
    return problems


def images(fig: Figure) -> list[AxesImage]:
    return [image for ax in fig.axes for image in ax.get_images()]


def readable_width(fig: Figure) -> float:
    """The figure's width in pixels as saved."""
    return fig.get_size_inches()[0] * DPI


def test_masks_figure_one_colour_range_blank_blocked_cells_labelled_rows():
    masks = load_example("masks")
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((masks.NUM_TOKENS, masks.NUM_FEATURES)) for _ in range(3))
    fig = rendered(masks.draw(q, k, v))
    assert readable_width(fig) <= 1.5 * README_WIDTH  # numbers stay ~10 px high at README width
    assert {image.get_clim() for image in images(fig)} == {(0.0, 1.0)}  # one range: weights are comparable
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == len(masks.masks()) and len(fig.axes) == len(panels) + 1  # one colour bar for all
    for ax, (name, mask) in zip(panels, masks.masks().items()):
        attendable = np.broadcast_to(mask, (masks.NUM_TOKENS, masks.NUM_TOKENS))
        numbers = [t for t in ax.texts if t.get_text().replace(".", "").isdigit()]
        assert len(numbers) == attendable.sum(), name  # a blocked cell prints nothing
        labelled = [t for t in ax.texts if "no key" in t.get_text()]
        assert len(labelled) == (~attendable.any(axis=1)).sum(), name  # every fully masked row says so
    assert any(f"<= {masks.WINDOW}" in ax.get_title() for ax in panels)  # the window size is stated
    assert sum("no key" in t.get_text() for ax in panels for t in ax.texts) == masks.NUM_PADDING
    assert labels_and_panels_collide(fig) == []


def test_multi_head_figure_shares_the_range_and_its_heads_differ():
    example = load_example("multi_head_attention")
    import numpy_attention as na

    module = na.MultiHeadAttention(example.EMBED_DIM, example.NUM_HEADS, batch_first=True, rng=example.SEED)
    x = example.INPUT_SCALE * example.SAMPLE_INPUT[None].astype(np.float64)
    _, weights = module(x, average_attn_weights=False)
    fig = rendered(example.draw(weights[0]))
    assert {image.get_clim() for image in images(fig)} == {(0.0, 1.0)}
    assert np.abs(weights[0, 0] - weights[0, 1]).max() > 0.5  # the heads attend visibly differently
    assert labels_and_panels_collide(fig) == []


def test_walkthrough_figure_shows_right_and_wrong_on_shared_scales():
    example = load_example("gradcheck_walkthrough")
    rng = np.random.default_rng(0)
    x, gain = rng.standard_normal((4, 6)), rng.uniform(0.5, 1.5, 6)
    fig = rendered(example.draw(x, gain, (2, 0)))
    dx_images = [image for image in images(fig) if image.get_cmap().name.startswith("coolwarm")]
    error_images = [image for image in images(fig) if image.get_cmap().name.startswith("magma")]
    assert len(dx_images) == 4 and len({image.get_clim() for image in dx_images}) == 1  # analytic = numeric scale
    assert len(error_images) == 2 and error_images[0].norm is error_images[1].norm  # right and wrong, one scale
    ylabels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert "right" in ylabels and "wrong" in ylabels
    assert labels_and_panels_collide(fig) == []


def test_bug_zoo_figure_has_a_bar_per_bug_a_threshold_and_a_caption():
    example = load_example("bug_zoo")
    from gradcheck import bugs

    rows = [{"name": bug.name, "caught_by": bug.caught_by, "rtol": 1e-5 if bug.caught_by == bugs.FINITE_DIFFERENCES
             else 1e-10, "wrong": None if i == 0 else 0.5, "right": example.FLOOR if i == 1 else 1e-12}
            for i, bug in enumerate(bugs.BUGS)]
    fig, num_wrong, num_right = example.draw(rows)
    rendered(fig)
    assert num_wrong == num_right == len(bugs.BUGS)  # every bug, the one whose check stopped included
    (ax,) = fig.axes
    ticks = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]
    assert len(ticks) == len(bugs.BUGS)  # a pass tolerance on every row
    assert "pass tolerance" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    notes = [t.get_text() for t in ax.texts]
    assert notes.count("check stopped: shapes disagree") == 1 and notes.count("correct: exactly 0") == 1
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "[ref]" in caption and "[FD]" in caption and "finite differences" in caption
    assert labels_and_panels_collide(fig) == []


def test_long_sequence_figure_plots_the_extra_memory():
    example = load_example("long_sequence")
    rows = [{"length": n, "naive": {"peak_bytes": 9 * n * n, "extra_bytes": 8 * n * n, "median_seconds": 1e-6 * n},
             "flash": {"peak_bytes": 3000 * n, "extra_bytes": 2**21, "median_seconds": 2e-6 * n}}
            for n in (256, 512, 1024)]
    record = {"rows": rows, "config": {"head_dim": 64, "dtype": "float32", "repeats": 1, "naive_budget_gib": 1},
              "machine": {"threads_env": {}}}
    fig = rendered(example.draw(record))
    memory = fig.axes[0]
    assert "extra memory" in memory.get_ylabel()
    flash = next(line for line in memory.lines if line.get_label() == "flash")
    np.testing.assert_allclose(flash.get_ydata(), [2.0] * 3)  # extra bytes in MiB, not the peak
    assert labels_and_panels_collide(fig) == []


def test_the_default_long_sequence_run_is_the_readme_figure():
    """No flag hidden in a docstring: the README runs the example as it is."""
    from helpers.example_runner import ROOT

    readme = (ROOT / "README.md").read_text()
    assert "`python examples/long_sequence.py` draws" in readme
    example = load_example("long_sequence")
    assert "--max-len 16384" not in (example.__doc__ or "")


def test_benchmark_ratio_labels_overlap_nothing(monkeypatch, tmp_path):
    from benchmarks.run import plot_ratios

    drawn = []
    import matplotlib.pyplot as plt

    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(rendered(fig)))
    monkeypatch.setattr(plt, "close", lambda *a: None)  # keep the figure (and its canvas) to measure it
    comparisons = [  # values next to their targets and to the equal-time line, as in real runs
        {"numerator": "numpy_attention", "denominator": f"torch {i}", "median_ratio": ratio, "target": target,
         "met": None if target is None else ratio <= target}
        for i, (ratio, target) in enumerate([(0.79, 0.8), (1.17, 1.0), (0.94, 0.62), (1.01, None), (1.25, 1.5)])
    ]
    machine = {"blas": {"threads": 2}, "numpy": "2", "torch": "2", "load_average_before": [1.0]}
    assert plot_ratios([{"name": "case", "comparisons": comparisons}], str(tmp_path / "r.png"), machine)
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    values = [t for t in ax.texts]
    assert len(values) == len(comparisons)
    boxes = [t.get_window_extent(renderer) for t in values]
    lines = [line.get_window_extent(renderer) for line in ax.lines]
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    for box in boxes:
        assert not any(box.overlaps(other) for other in lines + bars)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert labels_and_panels_collide(fig) == []

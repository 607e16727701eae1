"""Charts of a comparison, drawn with matplotlib (Agg, no display) to PNG or SVG bytes.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot: no global state,
safe from worker threads, and nothing to close. Margins are fixed per chart rather than
computed (``tight_layout``/``bbox_inches="tight"`` lay out all text two more times: they
tripled the time of a report). Each function returns ``None`` when the data
it needs is absent (e.g. an imported experiment without per-achievement detail), so the
report can say so instead of drawing an empty chart.
"""

from __future__ import annotations

import io
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullLocator  # noqa: E402

from crafter_tui.evaluation.compare import Comparison  # noqa: E402
from crafter_tui.world.rules import ACHIEVEMENTS  # noqa: E402

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DPI = 80


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _margins(fig: Figure, *, left: float, bottom: float, top: float, right: float = 0.25,
             hspace: float | None = None) -> None:
    """Fixed margins in inches (converted to the figure fractions matplotlib wants)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        hspace=hspace)


def render(fig: Figure, fmt: str = "png") -> bytes:
    """The figure as PNG or SVG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def difference_forest(comparison: Comparison) -> Figure | None:
    """Point +- bootstrap CI of (candidate - baseline) for every metric and candidate."""
    if not comparison.pairs:
        return None
    metrics = [m.metric for m in comparison.pairs[0].metrics]
    fig = Figure(figsize=(8, 1.0 + 0.9 * len(metrics)))
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric_index in zip(axes, range(len(metrics)), strict=True):
        for row, pair in enumerate(comparison.pairs):
            result = pair.metrics[metric_index]
            if result.difference is None:
                continue
            low = result.ci.low if result.ci.low is not None else result.difference
            high = result.ci.high if result.ci.high is not None else result.difference
            ax.errorbar([result.difference], [row], xerr=[[result.difference - low], [high - result.difference]],
                        fmt="o", color=_color(row + 1), capsize=4)
        ax.axvline(0.0, color="#888", linewidth=1, linestyle="--")
        ax.xaxis.set_major_locator(MaxNLocator(6))
        ax.set_yticks(range(len(comparison.pairs)), [p.candidate for p in comparison.pairs])
        ax.set_ylim(-0.7, len(comparison.pairs) - 0.3)
        ax.set_title(f"{comparison.pairs[0].metrics[metric_index].label}: difference vs {comparison.baseline}",
                     fontsize=9, loc="left")
    _margins(fig, left=1.6, bottom=0.45, top=0.35, hspace=1.0)
    return fig


def achievement_spectrum(comparison: Comparison) -> Figure | None:
    """Success rate (%) of the 22 achievements, grouped bars per experiment, log axis."""
    detailed = {e.name: [r.rate or 0.0 for r in e.success or []] for e in comparison.experiments if e.success}
    return spectrum_figure(detailed) if detailed else None


def spectrum_figure(rates: dict[str, list[float]]) -> Figure:
    """Grouped bars of success fractions (22 per group, Crafter's order) on a log % axis.

    A zero rate is drawn at 0.01% (below the axis) so a missing bar still means "never"."""
    fig = Figure(figsize=(11, 4.2))
    ax = fig.subplots()
    width = 0.8 / max(1, len(rates))
    x = np.arange(len(ACHIEVEMENTS))
    for index, (name, values) in enumerate(rates.items()):
        percent = 100.0 * np.asarray(values, dtype=float)
        ax.bar(x + (index - (len(rates) - 1) / 2) * width, np.maximum(percent, 0.01), width,
               label=name, color=_color(index))
    ax.set_yscale("log")
    ax.set_ylim(0.1, 110)
    ax.yaxis.set_major_locator(FixedLocator([0.1, 1, 10, 100]))
    ax.yaxis.set_major_formatter(FixedFormatter(["0.1", "1", "10", "100"]))
    ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost more to lay out than the bars
    ax.set_ylabel("success rate (%)")
    ax.set_xticks(x, [name.replace("_", " ") for name in ACHIEVEMENTS], rotation=60, ha="right", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")  # "best" placement costs a search over all data
    ax.set_title("Achievement spectrum (log scale)", fontsize=10)
    _margins(fig, left=0.7, bottom=1.45, top=0.35)
    return fig


def difference_heatmap(comparison: Comparison) -> Figure | None:
    """Success-rate difference (percentage points) vs the baseline: achievements x candidates.

    Cells whose Boschloo test survives Benjamini-Hochberg are marked with '*'.
    """
    pairs = [p for p in comparison.pairs if p.achievements]
    if not pairs:
        return None
    matrix = np.array([[100.0 * (row.difference or 0.0) for row in p.achievements or []] for p in pairs]).T
    limit = max(1.0, float(np.abs(matrix).max()))
    fig = Figure(figsize=(2.2 + 1.3 * len(pairs), 7.5))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(ACHIEVEMENTS)), list(ACHIEVEMENTS), fontsize=8)
    ax.set_xticks(range(len(pairs)), [p.candidate for p in pairs], rotation=30, ha="right", fontsize=8)
    for col, pair in enumerate(pairs):
        for row, cell in enumerate(pair.achievements or []):
            mark = "*" if cell.significant else ""
            ax.text(col, row, f"{matrix[row, col]:+.0f}{mark}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label=f"pp vs {comparison.baseline}")
    ax.set_title("Success-rate difference", fontsize=10)
    _margins(fig, left=1.5, bottom=1.0, top=0.4, right=1.1)
    return fig


def achievements_box(comparison: Comparison) -> Figure | None:
    """Box plot with the episodes drawn as jittered points: achievements per episode."""
    per_episode = {e.name: e.per_episode_achievements for e in comparison.experiments}
    names = [name for name, values in per_episode.items() if values]
    if not names:
        return None
    fig = Figure(figsize=(1.8 + 1.4 * len(names), 4))
    ax = fig.subplots()
    data = [np.asarray(per_episode[name], dtype=float) for name in names]
    ax.boxplot(data, showfliers=False)
    jitter = np.random.default_rng(0)
    for index, values in enumerate(data):
        ax.scatter(index + 1 + jitter.uniform(-0.15, 0.15, values.size), values, s=8, alpha=0.5,
                   color=_color(index))
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("achievements per episode")
    ax.set_title("Achievements per episode", fontsize=10)
    _margins(fig, left=0.7, bottom=1.0, top=0.4)
    return fig


def performance_profiles(comparison: Comparison) -> Figure | None:
    """Fraction of episodes with at least x achievements, one curve per experiment."""
    with_data = [e for e in comparison.experiments if e.profile]
    if not with_data:
        return None
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for index, experiment in enumerate(with_data):
        xs, ys = zip(*experiment.profile, strict=True)
        ax.step(xs, ys, where="post", label=experiment.name, color=_color(index))
    ax.set_xlabel("x (achievements)")
    ax.set_ylabel("fraction of episodes with >= x")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper right")  # "best" placement costs a search over all data
    ax.set_title("Performance profiles", fontsize=10)
    _margins(fig, left=0.7, bottom=0.6, top=0.4)
    return fig


def improvement_matrix(comparison: Comparison) -> Figure | None:
    """P(row's episode unlocks more than column's) (+ ties/2), the A12 of every ordered pair."""
    names = list(comparison.probability_of_improvement)
    if len(names) < 2:
        return None
    matrix = np.array([[comparison.probability_of_improvement[r][c] if comparison.probability_of_improvement[r][c]
                        is not None else np.nan for c in names] for r in names], dtype=float)
    fig = Figure(figsize=(2.5 + 0.9 * len(names), 2 + 0.8 * len(names)))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="PuOr", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for r in range(len(names)):
        for c in range(len(names)):
            if not np.isnan(matrix[r, c]):
                ax.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="P(row > column)")
    ax.set_title("Probability of improvement", fontsize=10)
    _margins(fig, left=1.4, bottom=1.2, top=0.4, right=1.1)
    return fig


def instances_chart(comparison: Comparison) -> Figure | None:
    """Mean achievements per instance (difficulty), grouped by experiment."""
    instances = sorted({i.instance for e in comparison.experiments for i in e.instances})
    if len(instances) < 2:
        return None
    fig = Figure(figsize=(1.5 + 1.6 * len(instances), 3.6))
    ax = fig.subplots()
    width = 0.8 / len(comparison.experiments)
    for index, experiment in enumerate(comparison.experiments):
        by_name = {i.instance: i for i in experiment.instances}
        heights = [by_name[name].mean_achievements if name in by_name and by_name[name].mean_achievements
                   is not None else 0.0 for name in instances]
        ax.bar(np.arange(len(instances)) + (index - (len(comparison.experiments) - 1) / 2) * width, heights, width,
               label=experiment.name, color=_color(index))
    ax.set_xticks(range(len(instances)), instances)
    ax.set_ylim(0, 1.25 * max(ax.get_ylim()[1], 1.0))  # headroom for the legend
    ax.set_ylabel("mean achievements")
    ax.legend(fontsize=8, loc="upper right")  # "best" placement costs a search over all data
    ax.set_title("Instances", fontsize=10)
    _margins(fig, left=0.7, bottom=0.5, top=0.4)
    return fig


def comparison_charts(comparison: Comparison, fmt: str = "png") -> dict[str, bytes]:
    """Every chart that has data, rendered: chart id -> image bytes (in report order)."""
    builders = {
        "differences": lambda: difference_forest(comparison),
        "spectrum": lambda: achievement_spectrum(comparison),
        "heatmap": lambda: difference_heatmap(comparison),
        "box": lambda: achievements_box(comparison),
        "profiles": lambda: performance_profiles(comparison),
        "improvement": lambda: improvement_matrix(comparison),
        "instances": lambda: instances_chart(comparison),
    }
    charts: dict[str, bytes] = {}
    for key, build in builders.items():
        fig = build()
        if fig is not None:
            charts[key] = render(fig, fmt)
    return charts

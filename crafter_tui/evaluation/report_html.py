"""The comparison as one self-contained HTML file: inline CSS, charts as base64 images, no network.

Everything is escaped; nothing is fetched when the file is opened (no scripts, fonts or
stylesheets from elsewhere), so the report can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from crafter_tui.evaluation.charts import comparison_charts
from crafter_tui.evaluation.compare import Comparison, PairComparison
from crafter_tui.evaluation.report_md import ci_text, fmt, fmt_delta, fmt_p, score_ci_text

CHART_TITLES = {
    "differences": "Differences vs the baseline (point ± 95% bootstrap CI)",
    "spectrum": "Achievement spectrum",
    "heatmap": "Success-rate difference heatmap (* = significant after Benjamini-Hochberg)",
    "box": "Achievements per episode (box and strip plot)",
    "profiles": "Performance profiles",
    "improvement": "Probability-of-improvement matrix (A12)",
    "instances": "Instances (difficulty)",
}

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.warning { background: #fff4e0; border-left: 4px solid #f0a000; padding: 0.5em 0.8em; margin: 0.6em 0; }
.better { color: #1a7f1a; font-weight: 600; } .worse { color: #b00020; font-weight: 600; }
.under { color: #8a6d00; } .meta { color: #555; }
figure { margin: 1em 0; } figcaption { font-weight: 600; margin-bottom: 0.3em; }
img.chart { max-width: 100%; border: 1px solid #eee; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], raw_cells: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if raw_cells else _e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(comparison: Comparison, charts: dict[str, bytes] | None = None, *,
                title: str = "Experiment comparison") -> str:
    """The report; ``charts`` (id -> PNG bytes) are drawn when not given."""
    charts = comparison_charts(comparison) if charts is None else charts
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Baseline <b>{_e(comparison.baseline)}</b> · alpha {comparison.alpha:g} · '
        f"{comparison.resamples} bootstrap/permutation resamples (seed {comparison.seed}) · "
        f"{_e(comparison.created_at.strftime('%Y-%m-%d %H:%M'))} UTC</p>",
    ]
    parts += [f'<div class="warning">{_e(w)}</div>' for w in comparison.warnings]
    parts.append(_experiments_section(comparison))
    parts.append(_settings_section(comparison))
    parts += [_pair_section(pair, comparison.alpha) for pair in comparison.pairs]
    parts.append(_instances_section(comparison))
    parts.append(_charts_section(charts))
    parts.append(_success_section(comparison))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _experiments_section(comparison: Comparison) -> str:
    metric_names = comparison.metrics
    header = ["experiment", "version", "model", "episodes", "Crafter score", "progression", "ach. mean",
              "median", "std", "IQM", *(f"{m} mean" for m in metric_names if m != "achievements")]
    rows = []
    for e in comparison.experiments:
        rows.append([e.name, e.version, e.model, str(e.episodes), fmt(e.crafter_score), fmt(e.progression),
                     fmt(e.achievements.mean), fmt(e.achievements.median), fmt(e.achievements.std),
                     fmt(e.achievements.iqm),
                     *(fmt(e.metrics[m].mean) if m in e.metrics else "n/a" for m in metric_names
                       if m != "achievements")])
    notes = "".join(f'<div class="warning">{_e(e.name)}: {_e(e.note)}</div>' for e in comparison.experiments if e.note)
    scalars = sorted({k for e in comparison.experiments for k in e.scalars})
    custom = ""
    if scalars:
        custom = "<h3>Custom metrics</h3>" + _table(
            ["experiment", *scalars], [[e.name, *(fmt(e.scalars.get(k)) for k in scalars)]
                                       for e in comparison.experiments])
    changelog = "".join(f"<li><b>{_e(e.name)} {_e(e.version)}</b>: {_e(e.notes)}</li>"
                        for e in comparison.experiments if e.notes)
    if changelog:
        custom += f"<h3>Changelog</h3><ul>{changelog}</ul>"
    return "<h2>Experiments</h2>" + _table(header, rows) + notes + custom


def _settings_section(comparison: Comparison) -> str:
    diff = comparison.settings
    if not diff.keys:
        return "<h2>Settings that differ</h2><p>None: the experiments share every recorded setting.</p>"
    rows = []
    for name, values in diff.values.items():
        cells = [name]
        for key in diff.keys:
            delta = diff.deltas.get(name, {}).get(key)
            cells.append(fmt(values.get(key)) + (f" ({delta:+g})" if delta is not None else ""))
        rows.append(cells)
    return (f"<h2>Settings that differ</h2><p class=\"meta\">Deltas (in brackets) are against "
            f"{_e(comparison.baseline)}.</p>" + _table(["experiment", *diff.keys], rows))


def _verdict_cell(verdict: str) -> str:
    css = "under" if verdict.startswith("underpowered") else (
        "better" if "better" in verdict else "worse" if "worse" in verdict else "")
    return f'<span class="{css}">{_e(verdict)}</span>'


def _pair_section(pair: PairComparison, alpha: float) -> str:
    rows = [[_e(m.label), f"{m.n_baseline}/{m.n_candidate}", fmt(m.mean_baseline), fmt(m.mean_candidate),
             fmt_delta(m.difference), _e(ci_text(m)), fmt_p(m.p_permutation), fmt_p(m.p_permutation_holm),
             fmt_p(m.p_welch), f"{fmt_p(m.p_rank)} ({m.rank_test})", fmt(m.a12), fmt(m.cliffs_delta),
             fmt(m.cohens_d), _verdict_cell(m.verdict)] for m in pair.metrics]
    out = [f"<h2>{_e(pair.candidate)} vs {_e(pair.baseline)}</h2>",
           f"<p><i>{_e(pair.pairing)}.</i> Crafter score delta {fmt_delta(pair.crafter_score_delta)}{_e(score_ci_text(pair))}, "
           f"progression delta {fmt_delta(pair.progression_delta)}.</p>",
           _table(["metric", "n", "baseline", "candidate", "difference", "95% CI", "p perm.", "p Holm", "p Welch",
                   "p rank", "A12", "Cliff's δ", "Cohen's d", "verdict"], rows, raw_cells=True)]
    if pair.scalar_deltas:
        out.append("<p>Custom metric deltas: " + _e(", ".join(f"{k} {v:+.4g}" for k, v in pair.scalar_deltas.items()))
                   + "</p>")
    if pair.achievements is not None:
        out.append(f"<h3>Per achievement: Boschloo exact test, Benjamini-Hochberg across 22 (alpha {alpha:g})</h3>")
        if pair.achievements_underpowered:
            out.append('<div class="warning">Underpowered: with these episode counts no single achievement '
                       "difference can reach significance.</div>")
        out.append(_table(
            ["achievement", "baseline", "candidate", "difference", "p Boschloo", "q BH", "significant"],
            [[a.achievement, f"{a.baseline_successes}/{a.baseline_n}", f"{a.candidate_successes}/{a.candidate_n}",
              fmt_delta(a.difference), fmt_p(a.p_boschloo), fmt_p(a.p_bh), "yes" if a.significant else "no"]
             for a in pair.achievements]))
    if pair.instances:
        out.append("<h3>Instances (candidate − baseline)</h3>" + _table(
            ["instance", "episodes", "completion rate", "mean achievements", "Crafter score", "mean steps"],
            [[i.instance, f"{i.baseline_episodes}/{i.candidate_episodes}", fmt_delta(i.completion_rate_delta),
              fmt_delta(i.mean_achievements_delta), fmt_delta(i.crafter_score_delta), fmt_delta(i.mean_steps_delta)]
             for i in pair.instances]))
    return "\n".join(out)


def _instances_section(comparison: Comparison) -> str:
    rows = [[e.name, i.instance, str(i.episodes), fmt(i.completion_rate), fmt(i.death_rate),
             fmt(i.mean_achievements), fmt(i.crafter_score), fmt(i.mean_steps), fmt(i.mean_wall_s)]
            for e in comparison.experiments for i in e.instances]
    return ("<h2>Instances</h2><p class=\"meta\">Completion: the episode ended by its step/turn limit or by the "
            "agent, not by death or an error. Completion time: mean steps and seconds.</p>" + _table(
                ["experiment", "instance", "episodes", "completion rate", "death rate", "mean achievements",
                 "Crafter score", "mean steps", "mean wall s"], rows))


def _charts_section(charts: dict[str, bytes]) -> str:
    figures = []
    for key, data in charts.items():
        mime = "image/svg+xml" if data.lstrip().startswith(b"<") else "image/png"
        encoded = base64.b64encode(data).decode("ascii")
        figures.append(f'<figure id="chart-{_e(key)}"><figcaption>{_e(CHART_TITLES.get(key, key))}</figcaption>'
                       f'<img class="chart" alt="{_e(CHART_TITLES.get(key, key))}" '
                       f'src="data:{mime};base64,{encoded}"></figure>')
    return "<h2>Charts</h2>" + ("".join(figures) or "<p>No chart has data.</p>")


def _success_section(comparison: Comparison) -> str:
    detailed = [e for e in comparison.experiments if e.success]
    if not detailed:
        return "<h2>Per-achievement success</h2><p>These experiments record achievement counts only.</p>"
    rows = []
    for index, first in enumerate(detailed[0].success or []):
        cells = [first.achievement]
        for experiment in detailed:
            rate = (experiment.success or [])[index]
            cells.append(f"{100 * (rate.rate or 0):.1f}% [{100 * (rate.ci.low or 0):.1f}, "
                         f"{100 * (rate.ci.high or 0):.1f}]")
        rows.append(cells)
    return ("<h2>Per-achievement success (Wilson 95% intervals)</h2>"
            + _table(["achievement", *(e.name for e in detailed)], rows))

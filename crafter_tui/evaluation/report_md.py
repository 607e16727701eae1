"""The comparison as Markdown (the original ``efficient_compare`` summary, with honest statistics)."""

from __future__ import annotations

from typing import Any

from crafter_tui.evaluation.compare import Comparison, MetricComparison, PairComparison


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: 'n/a' for missing, signed where it is a difference."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def fmt_delta(value: float | None) -> str:
    """A difference, always signed so the direction reads at a glance."""
    text = fmt(value)
    return text if value is None or text.startswith("-") or text == "n/a" else f"+{text}"


def fmt_p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def ci_text(metric: MetricComparison) -> str:
    if metric.ci.low is None or metric.ci.high is None:
        return "n/a"
    return f"[{fmt(metric.ci.low)}, {fmt(metric.ci.high)}] ({metric.ci.method})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render_markdown(comparison: Comparison) -> str:
    """The whole comparison as a Markdown document."""
    lines = [
        "# Experiment comparison", "",
        f"Baseline: **{comparison.baseline}** · alpha {comparison.alpha:g} · {comparison.resamples} resamples "
        f"(seed {comparison.seed}) · {comparison.created_at:%Y-%m-%d %H:%M} UTC", "",
    ]
    lines += [f"> **Warning:** {w}" for w in comparison.warnings]
    lines += ["", "## Experiments", ""]
    lines += _table(
        ["experiment", "version", "model", "episodes", "Crafter score", "progression", "achievements mean",
         "median", "std", "IQM"],
        [[e.name, e.version, e.model, str(e.episodes), fmt(e.crafter_score), fmt(e.progression),
          fmt(e.achievements.mean), fmt(e.achievements.median), fmt(e.achievements.std), fmt(e.achievements.iqm)]
         for e in comparison.experiments])
    scalar_names = sorted({k for e in comparison.experiments for k in e.scalars})
    if scalar_names:
        lines += ["", "### Custom metrics (per experiment)", ""]
        lines += _table(["experiment", *scalar_names],
                        [[e.name, *(fmt(e.scalars.get(k)) for k in scalar_names)] for e in comparison.experiments])
    changelog = [e for e in comparison.experiments if e.notes]
    if changelog:
        lines += ["", "## Changelog", ""]
        lines += [f"- **{e.name} {e.version}**: {e.notes}" for e in changelog]
    if comparison.settings.keys:
        lines += ["", "## Settings that differ", ""]
        lines += _table(["experiment", *comparison.settings.keys],
                        [[name, *(_setting_cell(comparison, name, key) for key in comparison.settings.keys)]
                         for name in comparison.settings.values])
    for pair in comparison.pairs:
        lines += ["", *_pair_markdown(pair, comparison.alpha)]
    lines += ["", *_instances_markdown(comparison), "", *_success_markdown(comparison)]
    return "\n".join(lines) + "\n"


def _setting_cell(comparison: Comparison, name: str, key: str) -> str:
    value = fmt(comparison.settings.values[name].get(key))
    delta = comparison.settings.deltas.get(name, {}).get(key)
    return f"{value} ({delta:+g})" if delta is not None else value


def _pair_markdown(pair: PairComparison, alpha: float) -> list[str]:
    lines = [f"## {pair.candidate} vs {pair.baseline}", "",
             f"*{pair.pairing}.* Crafter score delta: {fmt_delta(pair.crafter_score_delta)}{score_ci_text(pair)}; "
             f"progression delta: {fmt_delta(pair.progression_delta)}", ""]
    lines += _table(
        ["metric", "n", "baseline", "candidate", "difference", "95% CI", "p (perm.)", "p (Holm)", "p (Welch)",
         "p (rank)", "A12", "Cliff's d", "Cohen's d", "verdict"],
        [[m.label, f"{m.n_baseline}/{m.n_candidate}", fmt(m.mean_baseline), fmt(m.mean_candidate),
          fmt_delta(m.difference), ci_text(m), fmt_p(m.p_permutation), fmt_p(m.p_permutation_holm), fmt_p(m.p_welch),
          f"{fmt_p(m.p_rank)} ({m.rank_test})", fmt(m.a12), fmt(m.cliffs_delta), fmt(m.cohens_d), m.verdict]
         for m in pair.metrics])
    if pair.scalar_deltas:
        lines += ["", "Custom metric deltas: " + ", ".join(f"{k} {v:+.4g}" for k, v in pair.scalar_deltas.items())]
    if pair.achievements is not None:
        lines += ["", f"### Per achievement (Boschloo exact test, Benjamini-Hochberg across 22, alpha {alpha:g})", ""]
        if pair.achievements_underpowered:
            lines += ["> **Underpowered:** with these episode counts no single achievement can reach significance.", ""]
        lines += _table(
            ["achievement", "baseline", "candidate", "difference", "p (Boschloo)", "q (BH)", "significant"],
            [[a.achievement, f"{a.baseline_successes}/{a.baseline_n}", f"{a.candidate_successes}/{a.candidate_n}",
              fmt_delta(a.difference), fmt_p(a.p_boschloo), fmt_p(a.p_bh), "yes" if a.significant else "no"]
             for a in pair.achievements])
    if pair.instances:
        lines += ["", "### Instances (candidate - baseline)", ""]
        lines += _table(
            ["instance", "episodes", "completion rate", "mean achievements", "Crafter score", "mean steps"],
            [[i.instance, f"{i.baseline_episodes}/{i.candidate_episodes}", fmt_delta(i.completion_rate_delta),
              fmt_delta(i.mean_achievements_delta), fmt_delta(i.crafter_score_delta), fmt_delta(i.mean_steps_delta)]
             for i in pair.instances])
    return lines


def score_ci_text(pair: PairComparison) -> str:
    ci = pair.crafter_score_ci
    if ci is None or ci.low is None or ci.high is None:
        return ""
    return f" (95% CI [{fmt_delta(ci.low)}, {fmt_delta(ci.high)}], {ci.method})"


def _instances_markdown(comparison: Comparison) -> list[str]:
    lines = ["## Instances", ""]
    rows = [[e.name, i.instance, str(i.episodes), fmt(i.completion_rate), fmt(i.death_rate),
             fmt(i.mean_achievements), fmt(i.crafter_score), fmt(i.mean_steps), fmt(i.mean_wall_s)]
            for e in comparison.experiments for i in e.instances]
    return lines + _table(["experiment", "instance", "episodes", "completion rate", "death rate",
                           "mean achievements", "Crafter score", "mean steps", "mean wall s"], rows)


def _success_markdown(comparison: Comparison) -> list[str]:
    detailed = [e for e in comparison.experiments if e.success]
    if not detailed:
        return ["## Per-achievement success", "", "No per-achievement detail in these experiments."]
    lines = ["## Per-achievement success (Wilson 95% intervals)", ""]
    rows = []
    for index, row in enumerate(detailed[0].success or []):
        cells = [row.achievement]
        for experiment in detailed:
            rate = (experiment.success or [])[index]
            cells.append(f"{100 * (rate.rate or 0):.1f}% [{100 * (rate.ci.low or 0):.1f}, {100 * (rate.ci.high or 0):.1f}]")
        rows.append(cells)
    return lines + _table(["achievement", *(e.name for e in detailed)], rows)

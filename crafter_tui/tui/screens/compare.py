"""Compare: choose experiments and a baseline; charts, the significance table, the report.

Everything is computed by ``services.evaluation`` (statistics in a thread); this screen only
draws the ``Comparison`` it returns: achievements per episode, the achievement spectrum,
score differences with confidence intervals, and per-metric / per-achievement tests with
the underpowered flags the service sets.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, SelectionList, Static

from crafter_tui.tui.base import NavTabs, PaletteCommand, WorkbenchScreen
from crafter_tui.tui.widgets.charts import BarChart

FORMATS = ("html", "md", "json")


def short(achievement: str) -> str:
    """A 4-6 letter label for a crowded axis (collect_coal -> c.coal)."""
    verb, _, rest = achievement.partition("_")
    return f"{verb[0]}.{rest.replace('_', '')[:5]}"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def p_text(value: float | None) -> Text:
    if value is None:
        return Text("-")
    return Text(f"{value:.3f}", style="bold green" if value < 0.05 else "")


def heat_style(rate: float) -> str:
    """A background from dark (never) to bright green (always), with text that stays readable on it."""
    level = max(0.0, min(1.0, rate))
    green = int(40 + 160 * level)
    return f"{'black' if level > 0.55 else 'white'} on rgb({int(20 + 20 * level)},{green},{int(30 + 30 * level)})"


def spectrum_heatmap(achievements: list[str], spectrum: dict[str, list[float]]) -> Table:
    """The achievement spectrum as a heatmap table: one row per achievement (all 22, in Crafter's order), one
    column per experiment, each cell its success rate in % on a background as bright as the rate."""
    table = Table(title="achievement spectrum (success %)", title_justify="left", expand=True, box=None,
                  padding=(0, 1))
    table.add_column("achievement", no_wrap=True, overflow="ellipsis")
    for name in spectrum:
        table.add_column(name, justify="right", no_wrap=True, overflow="ellipsis", min_width=5)
    for index, achievement in enumerate(achievements):
        cells = [Text(f"{100 * rates[index]:3.0f}", style=heat_style(rates[index])) if rates[index] > 0
                 else Text("·", style="grey50") for rates in spectrum.values()]
        table.add_row(achievement.replace("_", " "), *cells)
    return table


class CompareScreen(WorkbenchScreen):
    """Experiments side by side, with honest statistics."""

    MODE = "compare"
    BINDINGS = [
        Binding("c", "compare", "Compare", id="compare.run"),
        Binding("x", "export", "Export report", id="compare.export"),
        Binding("r", "refresh", "Refresh list", id="compare.refresh"),
        Binding("o", "open_file", "Open experiments.json", id="compare.open"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.experiments: list = []
        self.comparison = None
        self.last_report: Path | None = None

    async def evaluation_service(self):  # type: ignore[no-untyped-def]
        return await self.workbench.aservice("evaluation")

    def compose(self) -> ComposeResult:
        yield NavTabs(self.MODE)
        with Horizontal(id="compare-body"):
            with VerticalScroll(id="compare-left"):
                yield Label("Experiments", classes="section")
                yield SelectionList[str](id="experiments-list")
                yield Label("baseline", classes="field-label")
                yield Select[str]([], id="baseline", prompt="first selected", compact=True)
                yield Button("Compare", id="do-compare", variant="primary")
                yield Label("report file", classes="field-label")
                yield Input("comparison.html", id="report-path", compact=True)
                yield Select[str]([(f, f) for f in FORMATS], value="html", allow_blank=False, id="report-format",
                                  compact=True)
                yield Button("Export report", id="do-export")
                yield Label("or open an experiments.json", classes="field-label")
                yield Input("", placeholder="experiments.json", id="open-path", compact=True)
                yield Button("Open & compare", id="do-open")
                yield Static("", id="compare-status")
            with VerticalScroll(id="compare-main"):
                yield Static(Text("Select two or more experiments and press c.", style="dim"), id="compare-summary")
                with Horizontal(id="compare-charts"):
                    yield BarChart("episodes by achievements unlocked", id="chart-per-episode")
                    with VerticalScroll(id="spectrum-box"):
                        yield Static(id="chart-spectrum")
                yield Static(id="compare-scores")
                yield Static(id="compare-table")
        yield Footer()

    def on_mount(self) -> None:
        self.load_experiments()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.load_experiments()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            self.command("Compare the selected experiments", "statistics against the baseline", "compare"),
            self.command("Export the comparison report", "HTML, Markdown or JSON", "export"),
            self.command("Refresh the experiment list", "re-read the experiment registry", "refresh"),
            self.command("Open an experiments.json", "compare the experiments a file describes", "open_file"),
        ]

    def action_refresh(self) -> None:
        self.load_experiments()

    @work(exclusive=True, exit_on_error=False, group="compare-list", name="listing experiments")
    async def load_experiments(self) -> None:
        infos = await (await self.evaluation_service()).list_experiments()
        self.experiments = infos
        listing = self.query_one("#experiments-list", SelectionList)
        keys = [f"{info.name}@{info.version}" for info in infos]
        if not infos:
            self.query_one("#compare-status", Static).update(
                Text("No experiments yet: register runs with `crafter-tui eval` or 'evaluate this model' "
                     "on the jobs screen.", style="dim"))
        if [listing.get_option_at_index(i).value for i in range(listing.option_count)] == keys:
            return  # unchanged: the cursor and the selection stay exactly where the user left them
        chosen = set(listing.selected)
        highlighted = (listing.get_option_at_index(listing.highlighted).value
                       if listing.highlighted is not None else None)
        listing.clear_options()
        for info, key in zip(infos, keys):
            label = f"{key}  {info.model[:16]}  n={info.episodes}"
            listing.add_option((label, key, key in chosen))
        if highlighted in keys:
            listing.highlighted = keys.index(highlighted)


    @on(SelectionList.SelectedChanged)
    def _selection_changed(self) -> None:
        chosen = self.query_one("#experiments-list", SelectionList).selected
        baseline = self.query_one("#baseline", Select)
        current = baseline.value
        baseline.set_options([(key, key) for key in chosen])
        if current in chosen:
            baseline.value = current

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "do-compare":
            self.action_compare()
        elif event.button.id == "do-export":
            self.action_export()
        elif event.button.id == "do-open":
            self.action_open_file()

    def action_open_file(self) -> None:
        """Compare the experiments an ``experiments.json`` (the original guide's format) describes."""
        text = self.query_one("#open-path", Input).value.strip()
        if not text:
            self.query_one("#open-path", Input).focus()
            self.notify("type the path of an experiments.json, then press Open", severity="warning")
            return
        path = Path(text).expanduser()
        if not path.is_file():
            self.notify(f"{path}: no such file", severity="error")
            return
        self.run_compare([str(path)], None)

    def action_compare(self) -> None:
        chosen = list(self.query_one("#experiments-list", SelectionList).selected)
        if len(chosen) < 2:
            self.notify("select at least two experiments", severity="warning")
            return
        baseline = self.query_one("#baseline", Select).value
        self.run_compare(chosen, baseline if isinstance(baseline, str) else None)

    @work(exclusive=True, exit_on_error=False, group="compare-run", name="comparing")
    async def run_compare(self, chosen: list[str], baseline: str | None) -> None:
        status = self.query_one("#compare-status", Static)
        status.update("computing statistics…")
        names = chosen if baseline is None else [baseline, *[c for c in chosen if c != baseline]]
        comparison = await (await self.evaluation_service()).compare(names, baseline=baseline.split("@")[0] if baseline else None)
        self.comparison = comparison
        status.update(Text(f"baseline {comparison.baseline}; {comparison.resamples:,} resamples, "
                           f"alpha {comparison.alpha}", style="green"))
        self._draw()

    # ---- drawing ------------------------------------------------------------------------
    def _draw(self) -> None:
        comparison = self.comparison
        summary = Table(title="experiments", title_justify="left", expand=True)
        for column in ("experiment", "model", "n", "crafter score", "progression", "achievements (mean ± sd)"):
            summary.add_column(column)
        for exp in comparison.experiments:
            ach = exp.achievements
            summary.add_row(f"{exp.name}@{exp.version}" + (" (baseline)" if exp.name == comparison.baseline else ""),
                            exp.model[:20], str(exp.episodes), fmt(exp.crafter_score), fmt(exp.progression, 3),
                            f"{fmt(ach.mean)} ± {fmt(ach.std)}")
        for warning in comparison.warnings:
            summary.add_row(Text(f"⚠ {warning}", style="yellow"), "", "", "", "", "")
        self.query_one("#compare-summary", Static).update(summary)
        self._draw_charts()
        self.query_one("#compare-scores", Static).update(self._scores_table())
        self.query_one("#compare-table", Static).update(self._significance_table())

    def _draw_charts(self) -> None:
        comparison = self.comparison
        top = max((int(v) for e in comparison.experiments for v in e.per_episode_achievements), default=0)
        labels = [str(i) for i in range(top + 1)]
        groups = {}
        for exp in comparison.experiments:
            counts = [0] * (top + 1)
            for value in exp.per_episode_achievements:
                counts[int(value)] += 1
            groups[exp.name] = counts
        self.query_one("#chart-per-episode", BarChart).set_bars(labels, groups)
        from crafter_tui.world.rules import ACHIEVEMENTS  # loaded by the evaluation service by now

        spectrum = {}
        for exp in comparison.experiments:
            rates = {rate.achievement: rate.rate or 0.0 for rate in exp.success or []}
            spectrum[exp.name] = [rates.get(name, 0.0) for name in ACHIEVEMENTS]
        self.query_one("#chart-spectrum", Static).update(spectrum_heatmap(list(ACHIEVEMENTS), spectrum))

    def _scores_table(self) -> Table:
        table = Table(title="differences vs baseline (candidate − baseline, 95% CI)", title_justify="left",
                      expand=True)
        for column in ("candidate", "metric", "baseline", "candidate", "difference", "CI", "p (perm, Holm)",
                       "verdict"):
            table.add_column(column)
        for pair in self.comparison.pairs:
            for metric in pair.metrics:
                ci = f"[{fmt(metric.ci.low)}, {fmt(metric.ci.high)}]"
                verdict = Text(metric.verdict + (" · underpowered" if metric.underpowered else ""),
                               style="yellow" if metric.underpowered else "")
                table.add_row(pair.candidate, metric.label, fmt(metric.mean_baseline), fmt(metric.mean_candidate),
                              fmt(metric.difference), ci, p_text(metric.p_permutation_holm or metric.p_permutation),
                              verdict)
        return table

    def _significance_table(self) -> Table:
        table = Table(title="per-achievement tests (Boschloo, Benjamini-Hochberg)", title_justify="left", expand=True)
        for column in ("candidate", "achievement", "baseline", "candidate", "p", "p (BH)", "flag"):
            table.add_column(column)
        for pair in self.comparison.pairs:
            if pair.achievements is None:
                table.add_row(pair.candidate, Text("counts only: no per-episode data", style="dim"), *[""] * 5)
                continue
            table.add_row(pair.candidate, Text(pair.pairing, style="dim"), *[""] * 5)
            for row in pair.achievements:
                if row.baseline_successes == 0 and row.candidate_successes == 0:
                    continue
                flag = Text("significant", style="bold green") if row.significant else Text("")
                if row.underpowered:
                    flag = Text("underpowered", style="yellow")
                table.add_row("", row.achievement, f"{row.baseline_successes}/{row.baseline_n}",
                              f"{row.candidate_successes}/{row.candidate_n}", p_text(row.p_boschloo),
                              p_text(row.p_bh), flag)
            if pair.achievements_underpowered:
                table.add_row("", Text("too few episodes for per-achievement tests to reach significance",
                                       style="yellow"), *[""] * 5)
        return table

    # ---- report -------------------------------------------------------------------------
    def action_export(self) -> None:
        if self.comparison is None:
            self.notify("compare experiments first", severity="warning")
            return
        text = self.query_one("#report-path", Input).value.strip()
        if not text:
            self.notify("report file: empty path", severity="error")
            return
        fmt_value = self.query_one("#report-format", Select).value
        self.export_report(Path(text).expanduser(), str(fmt_value))

    @work(exclusive=True, exit_on_error=False, group="compare-export", name="exporting the report")
    async def export_report(self, path: Path, report_format: str) -> None:
        status = self.query_one("#compare-status", Static)
        status.update(f"writing {path}…")
        written = await (await self.evaluation_service()).export_report(self.comparison, path, report_format)
        self.last_report = written
        status.update(Text(f"report written to {written}", style="green"))
        self.notify(f"report written to {written}")

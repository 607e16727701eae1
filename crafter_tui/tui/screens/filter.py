"""Filter tuning: every filter option as an input, and what the selection keeps, live.

A change is debounced (150 ms) and then answered by ``DatasetService.stats`` (DuckDB in a
thread, a fresh cursor per call; a newer call interrupts the older query, whose result is
dropped). The episode-level answer (counts, histogram, per-achievement success) comes
first; the turn-level detail (action mix, tokens, cost) and the preview of one exported
example follow, automatically on small stores and on request (``d``) on big ones, because
they need the turn index in memory.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Footer, Input, Label, ProgressBar, Select, Static

from crafter_tui.config import FilterSection
from crafter_tui.errors import UserError
from crafter_tui.tui.base import NavTabs, PaletteCommand, WorkbenchScreen
from crafter_tui.tui.widgets.charts import BarChart

DEBOUNCE_S = 0.1  # typing pauses are ~100-200 ms; a superseded query is interrupted anyway
DETAIL_DEBOUNCE_S = 0.5
AUTO_DETAIL_MAX_EPISODES = 500  # above this, turn-level detail is computed on request only
PREVIEW_CHARS = 4_000

#: (field, label, kind): kind is int | float | list | bool | mode
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("min_achievements", "min achievements", "int"),
    ("min_reward", "min reward", "float"),
    ("max_turns", "max turns", "int"),
    ("min_progression", "min progression (0-1)", "float"),
    ("max_invalid_fraction", "max invalid turns (0-1)", "float"),
    ("models", "models (comma separated)", "list"),
    ("runs", "runs (comma separated)", "list"),
    ("achievements", "required achievements", "list"),
    ("mode", "mode", "mode"),
    ("keep_before_achievement", "keep N turns before an unlock", "int"),
    ("max_examples", "max examples", "int"),
    ("validation_split", "validation split (0-1)", "float"),
    ("seed", "seed", "int"),
    ("cost_model", "cost model", "text"),
    ("require_termination", "require termination", "bool"),
    ("drop_invalid", "drop invalid turns", "bool"),
    ("dedupe", "dedupe", "bool"),
    ("balance_actions", "balance actions", "bool"),
    ("text_actions", "text actions", "bool"),
    ("drop_reasoning", "drop reasoning", "bool"),
    ("goal_reasoning", "goal as reasoning", "bool"),
)


def _initial(section: FilterSection, name: str) -> object:
    value = getattr(section, name)
    if isinstance(value, list):
        return ", ".join(value)
    return value


def bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


class FilterScreen(WorkbenchScreen):
    """Tune a filter against the trace store and export/validate the result."""

    MODE = "filter"
    BINDINGS = [
        Binding("d", "detail", "Detail", id="filter.detail"),
        Binding("e", "export", "Export", id="filter.export"),
        Binding("v", "validate", "Validate", id="filter.validate"),
        Binding("ctrl+r", "reload", "Reload store", id="filter.reload"),
        Binding("escape", "leave_input", "Leave field", show=False, id="filter.leave_input"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.spec = None  # the FilterSpec on screen (None until valid)
        self.stats = None  # latest SelectionStats (of stats_spec)
        self.stats_spec = None
        self.detail = None  # latest turn-level SelectionStats of self.spec
        self.store_ready = False
        self.changed_at = 0.0
        self.answered: list[float] = []  # seconds from last change to counts drawn (for the benchmark)
        self.queries = 0
        self.timings: list[tuple[float, float]] = []  # (query s, draw s) per answered change
        self.superseded = 0
        self.last_export: Path | None = None
        self._debounce = None
        self._detail_timer = None

    def compose(self) -> ComposeResult:
        section = self.workbench.config.filter
        yield NavTabs(self.MODE)
        with Horizontal(id="filter-body"):
            with VerticalScroll(id="filter-form"):
                for name, label, kind in FIELDS:
                    value = _initial(section, name)
                    if kind == "bool":
                        yield Checkbox(label, bool(value), id=f"f-{name}")
                        continue
                    yield Label(label, classes="field-label")
                    if kind == "mode":
                        yield Select([("turn", "turn"), ("trajectory", "trajectory")], value=value,
                                     allow_blank=False, id=f"f-{name}", compact=True)
                    else:
                        # optional fields may stay empty: an empty field is "no limit", never an error
                        yield Input("" if value is None else str(value), id=f"f-{name}", valid_empty=True,
                                    type={"int": "integer", "float": "number"}.get(kind, "text"), compact=True)
                yield Label("export to", classes="field-label")
                yield Input("sft.jsonl", id="f-export-path", compact=True)
                with Horizontal(classes="buttons"):
                    yield Button("Export", id="do-export", variant="primary")
                    yield Button("Validate", id="do-validate")
            with Vertical(id="filter-results"):
                yield Static("Opening the trace store…", id="filter-counts")
                yield Static("", id="filter-error", classes="error")
                with Horizontal(id="filter-charts"):
                    yield BarChart("episodes by achievements unlocked", id="filter-histogram")
                    with VerticalScroll(id="filter-success-box"):
                        yield Static(id="filter-success")
                with Horizontal(id="filter-tables"):
                    yield Static(id="filter-detail")
                    with VerticalScroll(id="filter-preview"):
                        yield Static(id="filter-preview-text")
                yield ProgressBar(id="filter-progress", show_eta=False)
                yield Static("", id="filter-actions-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter-progress").display = False
        self.query_one(f"#f-{FIELDS[0][0]}", Input).focus()  # type away at once; escape leaves the field
        self.open_store()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            self.command("Export the selection", "write the SFT file (path in the form)", "export"),
            self.command("Validate the exported file", "check it against the fine-tuning format", "validate"),
            self.command("Compute detail", "action mix, tokens, cost and a preview example", "detail"),
            self.command("Reload the trace store", "read runs written since the store was opened", "reload"),
        ]

    # ---- store --------------------------------------------------------------------------
    async def service(self, name: str):  # type: ignore[no-untyped-def]
        return await self.workbench.aservice(name)

    @work(exclusive=True, exit_on_error=False, group="filter-open", name="opening the trace store")
    async def open_store(self) -> None:
        traces = await self.service("traces")
        started = time.perf_counter()
        report = await traces.open()
        self.store_ready = True
        self.query_one("#filter-counts", Static).update(
            f"store open ({time.perf_counter() - started:.2f}s): {report.model_dump_json()[:200]}")
        self.schedule_stats()

    def action_leave_input(self) -> None:
        """Escape from a field so the screen's single-key bindings work again."""
        self.set_focus(None)

    def action_reload(self) -> None:
        if self.store_ready:
            self.refresh_store()

    @work(exclusive=True, exit_on_error=False, group="filter-open", name="reloading the trace store")
    async def refresh_store(self) -> None:
        await (await self.service("traces")).refresh()
        self.schedule_stats()

    # ---- inputs -> spec -----------------------------------------------------------------
    def read_spec(self):  # type: ignore[no-untyped-def]
        """The FilterSpec of the form (raises UserError naming the bad field)."""
        from crafter_tui.dataset.spec import build_spec

        data: dict[str, object] = {}
        for name, _, kind in FIELDS:
            widget = self.query_one(f"#f-{name}")
            if kind == "bool":
                data[name] = widget.value  # type: ignore[attr-defined]
            elif kind == "mode":
                data[name] = widget.value  # type: ignore[attr-defined]
            else:
                text = widget.value.strip()  # type: ignore[attr-defined]
                if kind == "list":
                    data[name] = tuple(part.strip() for part in text.split(",") if part.strip())
                elif text:
                    data[name] = _number(text, kind, name) if kind in ("int", "float") else text
        return build_spec(data, where="filter screen")

    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _changed(self, event) -> None:  # type: ignore[no-untyped-def]
        if getattr(event, "input", None) is not None and event.input.id == "f-export-path":
            return
        self.changed_at = time.perf_counter()
        self.schedule_stats()

    def schedule_stats(self) -> None:
        """(Re)start the debounce: only the last change within 150 ms is queried."""
        if self._debounce is not None:
            self._debounce.stop()
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._debounce = self.set_timer(DEBOUNCE_S, self._query)

    def _query(self) -> None:
        error = self.query_one("#filter-error", Static)
        for widget in self.query(".field-error"):
            widget.remove_class("field-error")
        try:
            spec = self.read_spec()
        except UserError as exc:
            # an out-of-range value is named here and marked at its field; the last good selection stays
            error.update(Text(f"✗ {exc} (the counts below are for the last valid filter)", style="bold red"))
            bad = _field_named(str(exc))
            if bad is not None:
                self.query_one(f"#f-{bad}").add_class("field-error")
            return
        error.update("")
        self.spec = spec
        if self.store_ready:
            self.run_stats(spec)

    @work(exclusive=True, exit_on_error=False, group="filter-stats", name="filter statistics")
    async def run_stats(self, spec) -> None:  # type: ignore[no-untyped-def]
        from crafter_tui.services.dataset import StatsSuperseded

        self.queries += 1
        dataset = await self.service("dataset")
        started = time.perf_counter()
        try:
            stats = await dataset.stats(spec)
        except StatsSuperseded:
            self.superseded += 1
            return
        if spec != self.spec:
            return  # the form changed while this ran: a newer query is coming
        queried = time.perf_counter()
        self.stats = stats
        self.stats_spec = spec
        self.detail = None
        self._draw_stats()
        self.timings.append((queried - started, time.perf_counter() - queried))
        if self.changed_at:
            self.answered.append(time.perf_counter() - self.changed_at)
        if stats.episodes_total <= AUTO_DETAIL_MAX_EPISODES:
            self._detail_timer = self.set_timer(DETAIL_DEBOUNCE_S, self.action_detail)
        else:
            self.query_one("#filter-detail", Static).update(
                Text("press d for the action mix, tokens, cost and a preview example", style="dim"))

    def _draw_stats(self) -> None:
        stats = self.stats
        counts = Text()
        counts.append(f"episodes {stats.episodes_selected:,} / {stats.episodes_total:,}", style="bold")
        counts.append(f"   examples {stats.examples_selected:,} / {stats.examples_total:,}"
                      f"{'' if stats.examples_exact else ' (estimate: needs turn detail)'}")
        if stats.mean_achievements is not None:
            counts.append(f"   mean achievements {stats.mean_achievements:.2f}")
        if stats.mean_reward is not None:
            counts.append(f"   mean reward {stats.mean_reward:.2f}")
        if stats.terminations:
            counts.append("\n" + "  ".join(f"{k} {v}" for k, v in stats.terminations.items()), style="dim")
        self.query_one("#filter-counts", Static).update(counts)
        histogram = stats.achievements_histogram
        self.query_one("#filter-histogram", BarChart).set_counts(
            [int(key) for key in histogram], list(histogram.values()), x_title="achievements unlocked",
            y_title="episodes")
        box = self.query_one("#filter-success-box")
        columns = 2 if box.size.width >= 46 or box.size.width == 0 else 1  # one scrolling column when narrow
        self.query_one("#filter-success", Static).update(success_table(stats.success_rates, columns))

    # ---- detail and preview -------------------------------------------------------------
    def action_detail(self) -> None:
        if self.spec is None or not self.store_ready:
            return
        if any(w.group == "filter-stats" and w.is_running for w in self.workers):
            # the service lets one statistics call supersede another: never let the slow detail
            # interrupt the count the user is waiting for; try again once it has been drawn
            self._detail_timer = self.set_timer(DETAIL_DEBOUNCE_S, self.action_detail)
            return
        self.run_detail(self.spec)

    @work(exclusive=True, exit_on_error=False, group="filter-detail", name="filter detail")
    async def run_detail(self, spec) -> None:  # type: ignore[no-untyped-def]
        from crafter_tui.services.dataset import StatsSuperseded

        box = self.query_one("#filter-detail", Static)
        box.update(Text("computing action mix, tokens and cost…", style="dim"))
        try:
            detail = await (await self.service("dataset")).stats(spec, turn_level=True, tokens=True)
        except StatsSuperseded:
            return
        if spec != self.spec:
            return
        self.detail = detail
        if self.stats_spec != spec:  # the detail includes the episode-level figures too
            self.stats, self.stats_spec = detail, spec
            self._draw_stats()
        box.update(self._detail_text(detail))
        await self._preview(spec)

    @staticmethod
    def _detail_text(detail) -> Text:  # type: ignore[no-untyped-def]
        text = Text()
        text.append(f"examples {detail.examples_selected:,}", style="bold")
        if detail.examples_train is not None:
            text.append(f"  (train {detail.examples_train:,}, valid {detail.examples_valid or 0:,})")
        text.append("\n\naction mix\n", style="bold")
        actions = detail.action_distribution or {}
        total = sum(actions.values()) or 1
        for name, count in list(actions.items())[:12]:
            text.append(f"{name:<18} {bar(count / total, 12)} {count / total:5.1%}\n")
        if detail.tokens is not None:
            tokens = detail.tokens
            text.append(f"\ntokens {tokens.total:,} ({tokens.method}, {tokens.encoding}); "
                        f"mean {tokens.per_example_mean:.0f}, max {tokens.per_example_max:,} per example\n")
        if detail.cost is not None:
            cost = detail.cost
            text.append(f"cost ≈ ${cost.usd:,.2f} on {cost.model} for {cost.epochs} epochs "
                        f"(prices of {cost.price_date})\n", style="bold")
        return text

    async def _preview(self, spec) -> None:  # type: ignore[no-untyped-def]
        """One example exactly as the exporter writes it (exported for real into a temp file)."""
        preview = self.query_one("#filter-preview-text", Static)
        one = spec.model_copy(update={"max_examples": 1, "validation_split": 0.0})
        with tempfile.TemporaryDirectory(prefix="crafter-tui-preview-") as folder:
            path = Path(folder) / "preview.jsonl"
            async for event in (await self.service("dataset")).export(one, path):
                if event.kind == "done" and event.result.examples == 0:
                    preview.update(Text("(no example selected)", style="dim"))
                    return
            first = path.read_text(encoding="utf-8").splitlines()[0]
        preview.update(chat_transcript(json.loads(first)))

    # ---- export / validate --------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "do-export":
            self.action_export()
        elif event.button.id == "do-validate":
            self.action_validate()

    def _export_path(self) -> Path:
        text = self.query_one("#f-export-path", Input).value.strip()
        if not text:
            raise UserError("export path is empty", where="export to")
        return Path(text).expanduser()

    def action_export(self) -> None:
        """Export, refusing an empty selection and asking before any existing file is overwritten (a dataset
        already used by a fine-tune job must never become 0 bytes by accident)."""
        try:
            spec, path = self.read_spec(), self._export_path()
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        if self.stats is not None and self.stats_spec == spec and (
                self.stats.episodes_selected == 0 or (self.stats.examples_exact and self.stats.examples_selected == 0)):
            self.notify("nothing to export: the filter selects 0 examples (nothing was written)", severity="error")
            return
        from crafter_tui.dataset.export import validation_path

        existing = [p for p in (path, validation_path(path) if spec.validation_split > 0 else None)
                    if p is not None and p.exists()]
        if not existing:
            self.run_export(spec, path)
            return
        from crafter_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_export(spec, path)
            else:
                self.notify("export cancelled: nothing was overwritten", timeout=3)

        sizes = ", ".join(f"{p} ({p.stat().st_size:,} bytes)" for p in existing)
        self.app.push_screen(ConfirmScreen(f"Overwrite {sizes}?", yes="Overwrite"), answered)

    @work(exclusive=True, exit_on_error=False, group="filter-export", name="export")
    async def run_export(self, spec, path: Path) -> None:  # type: ignore[no-untyped-def]
        progress = self.query_one("#filter-progress", ProgressBar)
        result_box = self.query_one("#filter-actions-result", Static)
        progress.display = True
        progress.update(total=None, progress=0)
        result_box.update(f"exporting to {path}…")
        try:
            async for event in (await self.service("dataset")).export(spec, path):
                if event.kind == "progress":
                    progress.update(total=max(1, event.total), progress=event.written)
                else:
                    result = event.result
                    self.last_export = result.path
                    self.workbench.last_export = result.path
                    result_box.update(Text(
                        f"exported {result.examples:,} examples (train {result.train:,}, valid {result.valid:,}) "
                        f"to {result.path} — {result.bytes:,} bytes in {result.seconds:.2f}s", style="green"))
                    self.notify(f"exported {result.examples:,} examples")
        finally:
            progress.display = False

    def action_validate(self) -> None:
        try:
            path = self.last_export or self._export_path()
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        self.run_validate(path)

    @work(exclusive=True, exit_on_error=False, group="filter-validate", name="validate")
    async def run_validate(self, path: Path) -> None:
        result_box = self.query_one("#filter-actions-result", Static)
        result_box.update(f"validating {path}…")
        report = await (await self.service("dataset")).validate(path)
        text = Text()
        text.append("valid" if report.ok else "INVALID", style="bold green" if report.ok else "bold red")
        text.append(f": {report.examples:,} examples, {len(report.errors)} errors, {len(report.warnings)} warnings; "
                    f"{report.billed_tokens:,} billed tokens over {report.epochs} epochs")
        if report.estimated_cost_usd is not None:
            text.append(f", ≈ ${report.estimated_cost_usd:,.2f}")
        for issue, style in [(i, "red") for i in report.errors[:5]] + [(i, "yellow") for i in report.warnings[:3]]:
            text.append(f"\n  line {issue.line}: {issue.code}: {issue.message}", style=style)
        result_box.update(text)


def _field_named(message: str) -> str | None:
    """The form field an error message names (``…: min_progression: Input should be …``)."""
    return next((name for name, _, kind in FIELDS if kind != "bool" and f"{name}:" in message), None)


def success_table(rates: dict[str, float], columns: int = 2) -> Table:
    """All 22 achievements' success rates in two columns, so the whole list fits the panel's height (one
    column, scrolled, where the panel is too narrow for two)."""
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 1), expand=True)
    items = list(rates.items())
    if columns == 1:
        table.add_column(no_wrap=True, overflow="ellipsis")
        table.add_column(no_wrap=True, width=4, justify="right")
        for name, rate in items:
            table.add_row(*_rate_cells(name, rate))
        return table
    for _ in range(2):  # a name and its rate, no bar: the full names fit side by side in ~50 columns
        table.add_column(no_wrap=True, overflow="ellipsis", min_width=12)
        table.add_column(no_wrap=True, width=4, justify="right")
    half = (len(items) + 1) // 2
    for left, right in zip(items[:half], [*items[half:], None]):
        cells: list[object] = []
        for item in (left, right):
            if item is None:
                cells += ["", ""]
                continue
            cells += _rate_cells(*item)
        table.add_row(*cells)
    return table


def _rate_cells(name: str, rate: float) -> list[Text]:
    style = "bold green" if rate >= 0.5 else "green" if rate > 0 else "grey50"
    return [Text(name.replace("_", " "), style="" if rate > 0 else "grey50"), Text(f"{rate:.0%}", style=style)]


def chat_transcript(example: dict[str, object]) -> Text:
    """One exported example as the conversation it is (role, text, tool calls), not as escaped JSON."""
    styles = {"system": "bold magenta", "user": "bold cyan", "assistant": "bold green", "tool": "bold yellow"}
    text = Text()
    messages = example.get("messages")
    if not isinstance(messages, list):
        text.append(json.dumps(example, indent=1, ensure_ascii=False)[:PREVIEW_CHARS])
        return text
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "?"))
        text.append(f"── {role} ", style=styles.get(role, "bold"))
        text.append("\n")
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        if content:
            text.append(str(content).rstrip() + "\n")
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            text.append(f"→ {function.get('name', '?')}({function.get('arguments', '')})\n", style="cyan")
        if len(text) > PREVIEW_CHARS:
            text.truncate(PREVIEW_CHARS)
            text.append("\n…", style="dim")
            break
    return text


def _number(text: str, kind: str, name: str) -> float | int:
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise UserError(f"{name}: not a {'whole ' if kind == 'int' else ''}number ({text!r})",
                        where="filter screen") from None

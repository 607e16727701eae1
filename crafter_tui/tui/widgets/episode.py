"""Widgets of the episode view: the local map, vitals, inventory and achievements.

They draw a ``StepRecord`` (the trace line) and nothing else, so a live episode, a replay
and a run written by another process look the same. Crafter's tables (``world.rules``) are
imported on first draw of a step, not at import: importing crafter costs ~0.5-3 s, which
must not delay the first paint (the thread that reads the first step imports it first).
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from crafter_tui.traces.schema import StepRecord

VIEW_COLUMNS = 9

#: symbol -> (glyph, style); two columns per cell so the map keeps its aspect ratio.
SYMBOL_STYLES: dict[str, tuple[str, str]] = {
    "?": ("  ", "on grey11"), "~": ("~~", "bold bright_white on dodger_blue3"),
    ".": ("  ", "on green4"), "#": ("##", "grey70 on grey35"), "_": ("  ", "on grey50"),
    ":": ("::", "khaki3 on light_goldenrod3"), "T": ("♣♣", "bold green1 on dark_green"),
    "%": ("%%", "bold yellow on red3"), "c": ("cc", "bold black on grey35"),
    "i": ("ii", "bold orange3 on grey35"), "d": ("◆◆", "bold bright_white on grey35"),
    "t": ("╥╥", "bold orange4 on green4"), "f": ("▣▣", "bold grey85 on grey23"),
    "@": ("@@", "bold black on yellow1"), "C": ("ᴥᴥ", "bold white on green4"),
    "Z": ("ZZ", "bold black on green3"), "S": ("SS", "bold white on grey30"),
    "*": ("→→", "bold white on grey35"), "p": ("**", "bold magenta on green4"),
}


class Panel(Widget):
    """A fixed-size text panel whose updates repaint only itself.

    ``Static.update`` asks for a layout of the whole screen on every call; these panels are
    sized by the stylesheet, so a new step only needs a repaint. That keeps a live episode
    (several updates a second, seven panels each) cheap for the event loop.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.content: RenderableType = ""

    def update(self, content: RenderableType) -> None:
        self.content = content
        self.refresh()

    def render(self) -> RenderableType:
        return self.content


class MapView(Panel):
    """The 9x7 local view, drawn in colour from the step record's ``view`` symbols, scaled to the room it has
    (each cell 2k columns by k rows, the largest k that fits), so a big terminal shows a big map."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: str | None = None

    def show(self, view: str | None) -> None:
        self.view = view
        self.refresh()

    def scale(self) -> int:
        rows = max(1, (len(self.view or "") + VIEW_COLUMNS - 1) // VIEW_COLUMNS)
        return max(1, min(self.size.width // (2 * VIEW_COLUMNS), self.size.height // rows))

    def render(self) -> RenderableType:
        if not self.view:
            return Text("(no step yet)", style="dim")
        scale = self.scale()
        text = render_view(self.view, scale)
        rows = (len(self.view) + VIEW_COLUMNS - 1) // VIEW_COLUMNS
        if self.size.height - rows * scale >= 2:  # room left below the map: the legend of what it shows
            text.append("\n\n")
            text.append_text(map_legend(self.view, self.size.width))
        return text


def map_legend(view: str, width: int) -> Text:
    """The symbols present in ``view``, each drawn as on the map with its name, wrapped to ``width``."""
    from crafter_tui.world.text_obs import SYMBOLS  # imported by the reader thread before the first step

    names = {symbol: name for name, symbol in SYMBOLS.items()}
    text = Text()
    column = 0
    for symbol in dict.fromkeys(view):
        glyph, style = SYMBOL_STYLES.get(symbol, (symbol * 2, "bold white on grey11"))
        label = f" {names.get(symbol, symbol)}  "
        if column and column + len(glyph) + len(label) > width:
            text.append("\n")
            column = 0
        text.append(glyph, style=style)
        text.append(label, style="dim")
        column += len(glyph) + len(label)
    return text


def render_view(view: str, scale: int = 1) -> Text:
    """The view as text: every cell ``2 * scale`` columns wide and ``scale`` rows high."""
    rows = [view[start:start + VIEW_COLUMNS] for start in range(0, len(view), VIEW_COLUMNS)]
    lines: list[Text] = []
    for row in rows:
        line = Text()
        for symbol in row:
            glyph, style = SYMBOL_STYLES.get(symbol, (symbol * 2, "bold white on grey11"))
            line.append(glyph * scale, style=style)
        lines.extend([line] * scale)
    return Text("\n").join(lines)


class VitalsBars(Panel):
    """Health, food, drink and energy as bars."""

    COLOURS = {"health": "red", "food": "dark_orange", "drink": "dodger_blue1", "energy": "yellow"}

    def show(self, step: StepRecord | None) -> None:
        if step is None:
            self.update(Text("(no step yet)", style="dim"))
            return
        from crafter_tui.world.rules import ITEMS, MAX_ITEM, VITALS

        counts = dict(zip(ITEMS, step.inventory))
        text = Text()
        for name in VITALS:
            value, top = counts.get(name, 0), MAX_ITEM[name]
            text.append(f"{name:<7}", style="bold")
            text.append("█" * value, style=self.COLOURS[name])
            text.append("░" * (top - value), style="grey30")
            text.append(f" {value}/{top}\n")
        text.append(f"{'night' if step.daylight < 0.5 else 'day'}{'  sleeping' if step.sleeping else ''}",
                        style="dim")
        self.update(text)


class InventoryView(Panel):
    """The items held (vitals excluded), in Crafter's order."""

    def show(self, step: StepRecord | None) -> None:
        if step is None:
            self.update(Text("(empty)", style="dim"))
            return
        from crafter_tui.world.rules import ITEMS, VITALS

        held = [(name, count) for name, count in zip(ITEMS, step.inventory) if name not in VITALS and count > 0]
        text = Text()
        for name, count in held:
            text.append(f"{name.replace('_', ' ')} ", style="bold")
            text.append(f"{count}\n")
        self.update(text if held else Text("(empty)", style="dim"))


class AchievementsView(Panel):
    """All 22 achievements: unlocked ones coloured, those unlocked at this step highlighted."""

    def show(self, unlocked: set[str], new: set[str], *, any_step: bool = True) -> None:
        if not any_step:
            self.update(Text("achievements appear with the first step", style="dim"))
            return
        from crafter_tui.world.rules import ACHIEVEMENTS

        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{len(unlocked)}/{len(ACHIEVEMENTS)} achievements\n", style="bold")
        for name in ACHIEVEMENTS:
            label = name.replace("_", " ")
            if name in new:
                text.append(f"★ {label}\n", style="bold black on yellow")
            elif name in unlocked:
                text.append(f"✓ {label}\n", style="green")
            else:
                text.append(f"· {label}\n", style="grey50")
        text.rstrip()
        self.update(text)

    def update(self, content: RenderableType) -> None:
        """Its height follows its lines (it scrolls in a box when the room is short): re-layout only when
        the number of lines changes, a plain repaint otherwise."""
        lines = content.plain.count("\n") + 1 if isinstance(content, Text) else 1
        relayout = lines != getattr(self, "_lines", None)
        self._lines = lines
        self.content = content
        self.refresh(layout=relayout)

"""A step scrubber: a position in an episode that keys and the mouse move."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class StepScrubber(Widget, can_focus=True):
    """Shows ``step/total`` on a track; left/right, home/end, page keys or a click move it."""

    BINDINGS = [
        Binding("left", "move(-1)", "Step back", show=False, id="scrubber.back"),
        Binding("right", "move(1)", "Step forward", show=False, id="scrubber.forward"),
        Binding("pageup", "move(-10)", "Back 10", show=False, id="scrubber.back10"),
        Binding("pagedown", "move(10)", "Forward 10", show=False, id="scrubber.forward10"),
        Binding("home", "jump(0)", "First step", show=False, id="scrubber.first"),
        Binding("end", "jump(-1)", "Last step", show=False, id="scrubber.last"),
    ]

    position: reactive[int] = reactive(0)
    total: reactive[int] = reactive(0)

    class Changed(Message):
        """The position was moved by the user (not by following a live episode)."""

        def __init__(self, scrubber: "StepScrubber", position: int) -> None:
            super().__init__()
            self.scrubber = scrubber
            self.position = position

    def set_range(self, total: int, position: int) -> None:
        self.total = total
        self.position = max(0, min(position, total - 1)) if total else 0

    def action_move(self, delta: int) -> None:
        self._user_set(self.position + delta)

    def action_jump(self, where: int) -> None:
        self._user_set(where if where >= 0 else self.total - 1)

    def _user_set(self, position: int) -> None:
        if not self.total:
            return
        position = max(0, min(position, self.total - 1))
        if position != self.position:
            self.position = position
        self.post_message(self.Changed(self, position))

    def on_click(self, event: events.Click) -> None:
        width = max(1, self._track_width())
        self._user_set(round(event.x / width * max(0, self.total - 1)))

    def _track_width(self) -> int:
        return max(1, self.size.width - len(self._label()) - 1)

    def _label(self) -> str:
        return f" {self.position + 1 if self.total else 0}/{self.total}"

    def render(self) -> Text:
        width = self._track_width()
        text = Text()
        if self.total:
            knob = round(self.position / max(1, self.total - 1) * (width - 1))
            text.append("━" * knob, style="bold cyan")
            text.append("●", style="bold yellow")
            text.append("─" * (width - knob - 1), style="grey50")
        else:
            text.append("─" * width, style="grey50")
        text.append(self._label(), style="bold")
        return text

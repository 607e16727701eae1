"""The fine-tune launch form: data file, host, base model, epochs, split and hyperparameters.

It returns a ``LaunchRequest`` validated by the service's own model; the first bad field is
named under the form and the form stays open.
"""

from __future__ import annotations

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from crafter_tui.config import AppConfig
from crafter_tui.errors import first_validation_error
from crafter_tui.tui.screens.form import FormScreen

BACKENDS = ("local", "openai", "synth", "modal")
#: (field, label, kind)
NUMBERS: tuple[tuple[str, str, str], ...] = (
    ("epochs", "epochs", "int"),
    ("validation_split", "validation split", "float"),
    ("batch_size", "batch size", "int"),
    ("learning_rate", "learning rate", "float"),
    ("subset", "subset (examples)", "int"),
    ("seed", "seed", "int"),
)


class LaunchJobScreen(FormScreen[object]):
    """Returns a ``services.finetune.LaunchRequest`` (or None when cancelled)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="jobform.cancel"),
                Binding("ctrl+s", "submit", "Launch", id="jobform.submit")]

    ERROR_ID = "job-form-error"
    OK_ID = "job-ok"

    def __init__(self, config: AppConfig, data: str = "sft.jsonl", *, initial: object | None = None,
                 error: str = "") -> None:
        """``initial``: a LaunchRequest whose values fill the form (the one whose launch failed), ``error``:
        why, shown under the form."""
        super().__init__()
        self.config = config
        self.data = str(getattr(initial, "data", None) or data)
        self.initial = initial
        self.error = error

    def _value(self, name: str, default: object) -> object:
        if self.initial is None:
            return default
        return getattr(self.initial, name, default)

    def compose(self) -> ComposeResult:
        ft = self.config.finetune
        defaults = {name: self._value(name, value) for name, value in (
            ("epochs", ft.epochs), ("validation_split", ft.validation_split), ("batch_size", ft.batch_size),
            ("learning_rate", ft.learning_rate), ("subset", None), ("seed", 0))}
        with Vertical(id="job-form", classes="form"):
            yield Label("Launch a fine-tune job", classes="title")
            with Grid(classes="form-grid"):
                yield Label("training data")
                yield Input(self.data, id="data", compact=True)
                yield Label("host")
                yield Select([(b, b) for b in BACKENDS], value=self._value("backend", ft.backend), allow_blank=False,
                             id="backend", compact=True)
                yield Label("base model")
                yield Input(str(self._value("model", ft.model)), id="model", compact=True)
                yield Label("suffix")
                yield Input(str(self._value("suffix", ft.suffix) or ""), id="suffix", compact=True)
                for name, label, kind in NUMBERS:
                    yield Label(label)
                    value = defaults[name]
                    yield Input("" if value is None else str(value), id=name,
                                type="integer" if kind == "int" else "number", compact=True)
            yield Static(self.error, id="job-form-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Launch", variant="primary", id="job-ok")
                yield Button("Cancel", id="job-cancel")

    def request(self) -> object:
        """The LaunchRequest of the form (raises ValueError naming the bad field)."""
        from crafter_tui.services.finetune import LaunchRequest

        values: dict[str, object] = {
            "data": self.query_one("#data", Input).value.strip(),
            "backend": self.query_one("#backend", Select).value,
            "model": self.query_one("#model", Input).value.strip(),
            "suffix": self.query_one("#suffix", Input).value.strip() or None,
        }
        for name, _, kind in NUMBERS:
            text = self.query_one(f"#{name}", Input).value.strip()
            if text:
                try:
                    values[name] = int(text) if kind == "int" else float(text)
                except ValueError:
                    raise ValueError(f"{name}: not a number ({text!r})") from None
        if not values["data"]:
            raise ValueError("training data: required")
        try:
            return LaunchRequest.model_validate(values)
        except ValidationError as exc:
            field, message = first_validation_error(exc, default_field="form")
            raise ValueError(f"{field}: {message}") from None

    def build(self) -> object:
        return self.request()

"""The modal form both launch dialogs share: build a validated value, or show why not."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.screen import ModalScreen
from textual.widgets import Button, Static

ResultT = TypeVar("ResultT")


class FormScreen(ModalScreen[ResultT | None], Generic[ResultT]):
    """Submit dismisses with ``build()``'s value; a ``ValueError`` is shown in ``#{ERROR_ID}`` instead.

    Subclasses set ``ERROR_ID`` and ``OK_ID`` (the error Static and the OK button) and implement ``build``.
    """

    ERROR_ID = "form-error"
    OK_ID = "form-ok"

    def build(self) -> ResultT:
        raise NotImplementedError

    def action_submit(self) -> None:
        try:
            value = self.build()
        except ValueError as exc:
            self.query_one(f"#{self.ERROR_ID}", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == self.OK_ID:
            self.action_submit()
        else:
            self.dismiss(None)

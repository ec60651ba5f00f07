"""`l`: which model's log the pane follows (the current model by default)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

FOLLOW_CURRENT = "\0current"


class LogChoice(ModalScreen[str | None]):
    """Dismisses with a model id, FOLLOW_CURRENT, or None (Escape: no change)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    LogChoice { align: center middle; }
    LogChoice OptionList { width: 60; height: auto; max-height: 80%; border: thick $primary; }
    """

    def __init__(self, models: list[str], following: str | None) -> None:
        super().__init__()
        self.models = models
        self.following = following

    def compose(self) -> ComposeResult:
        options = [Option("the current model (follows switches)", id=FOLLOW_CURRENT)]
        options += [
            Option(f"{model}{'  ◀' if model == self.following else ''}", id=model)
            for model in self.models
        ]
        menu = OptionList(*options)
        menu.border_title = "Show the log of"
        yield menu

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)

"""The base of the text panels: redraw only what changed.

A Static's `update()` normally asks for a layout pass, and a layout pass repaints the
whole screen (every visible log line included). Refreshing four panels a second that way
costs several percent of a core, so a panel whose text keeps its line count repaints
only itself, and one whose text did not change does nothing.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class TextPanel(Static):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: Text | None = None

    @property
    def shown_text(self) -> str:
        """What the panel shows, as plain text."""
        return self._shown.plain if self._shown else ""

    def show_text(self, text: Text) -> None:
        previous = self._shown
        if previous is not None and text == previous:
            return
        same_height = previous is not None and previous.plain.count("\n") == text.plain.count("\n")
        self._shown = text
        self.update(text, layout=not same_height)

"""The llama-server log: a capped `Log` (cheap with 10k+ lines) plus `/` search."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input, Log

MAX_LINES = 20_000
SYNC_WIDTH_LINES = 500  # batches up to this size are measured without a thread


class ServerLog(Log):
    """Follows the tail until the user scrolls up; Home/End jump to either end."""

    BINDINGS = [
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
    ]

    # Every batch of new lines grows the virtual size, which Widget declares with
    # layout=True: a layout pass, and a layout pass repaints the whole screen (every panel
    # and every visible log line). While a model streams that happened on every poll and
    # was most of the dashboard's CPU. Here a change only repaints the log, and the watcher
    # asks for a layout only when a scrollbar may appear or disappear.
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, **kwargs)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        # As Widget._refresh_scrollbars decides, with the vertical scrollbar already shown.
        width, height = self.container_size
        scrollbars_stay = (
            self.show_vertical_scrollbar
            and new.height > height
            and self.show_horizontal_scrollbar
            == (new.width > width - self.styles.scrollbar_size_vertical)
        )
        if scrollbars_stay:
            self._scroll_update(new)  # the scrollbar's thumb: repaints only the scrollbar
        else:
            self.refresh(layout=True)  # a scrollbar appears or goes: the layout changes

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        """Log measures new lines' width in a thread worker; for a poll's few dozen lines
        starting a thread costs more than measuring, and its answer comes back as a second
        screen update. Large batches (a backlog, a reset) still go to the thread."""
        if len(lines) > SYNC_WIDTH_LINES:
            super()._update_size(updates, lines)
        elif lines:
            widest = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)


class LogPane(Vertical):
    """The log plus a search box that is hidden until `/` opens it."""

    DEFAULT_CSS = """
    LogPane { height: 1fr; border: round $primary; }
    LogPane ServerLog { height: 1fr; }
    LogPane #search { display: none; height: 3; }
    LogPane.searching #search { display: block; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model: str | None = None
        self.seen = 0  # lines of the followed model's log already shown (its `total`)
        self.match = -1  # index of the last search hit, so Enter again finds the next

    def compose(self) -> ComposeResult:
        yield ServerLog(id="log")
        yield Input(placeholder="search the log (Enter: next match, Esc: close)", id="search")

    @property
    def log_widget(self) -> ServerLog:
        return self.query_one(ServerLog)

    def set_title(self, text: str) -> None:
        if self.border_title != text:  # setting it repaints the pane
            self.border_title = text

    def reset(self, model: str | None, marker: str | None = None) -> None:
        """Start over: another model was chosen, or its llama-server restarted. With a
        `marker` the lines shown so far stay, and the new log follows that line."""
        self.model = model
        self.seen = 0
        if marker is None:
            self.match = -1
            self.log_widget.clear()
        else:
            self.log_widget.write_line(marker)

    def add(self, lines: list[str]) -> None:
        if lines:
            self.log_widget.write_lines(lines)

    def open_search(self) -> None:
        self.add_class("searching")
        self.query_one("#search", Input).focus()

    def close_search(self) -> None:
        self.remove_class("searching")
        self.log_widget.focus()

    def find(self, needle: str) -> int | None:
        """The next line (after the last hit, wrapping) containing `needle`, scrolled into
        view and selected; None when no line has it."""
        lines = self.log_widget.lines
        if not needle or not lines:
            return None
        lowered = needle.lower()
        count = len(lines)
        for step in range(1, count + 1):
            index = (self.match + step) % count
            if lowered in lines[index].lower():
                self.match = index
                log = self.log_widget
                log.scroll_to(y=max(0, index - log.size.height // 2), animate=False)
                return index
        return None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        found = self.find(event.value)
        if found is None:
            self.notify(f"not found: {event.value}", severity="warning")
        else:
            self.notify(f"line {found + 1}: {self.log_widget.lines[found][:120]}", timeout=3)

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.has_class("searching"):
            event.stop()
            self.close_search()

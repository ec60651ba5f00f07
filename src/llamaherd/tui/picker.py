"""The model picker: `m` in the dashboard, and `herd up` with no ID in a terminal.

A screen (not an app) so the dashboard can push it over itself; `PickerApp` wraps the
same screen for `herd up`, where no dashboard runs yet.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from llamaherd.gguf.budget import describe as describe_memory
from llamaherd.schema import ModelRow
from llamaherd.tui.remote import DASH, fmt, fmt_ctx

COLUMNS = ("", "id", "name", "speed", "ctx", "memory", "best for", "state")
# `missing`: its GGUF is not on disk; choosing it answers with where to put the file.
STATE_STYLES = {"ready": "green", "failed": "red", "missing": "yellow"}


def matches(row: ModelRow, needle: str) -> bool:
    """Typing filters on id, name, aliases and best_for, case-insensitively."""
    if not needle:
        return True
    fields = [row.id, row.name, row.best_for, *row.aliases]
    return any(needle.lower() in f.lower() for f in fields if f)


class ModelPicker(ModalScreen[str | None]):
    """Dismisses with the chosen profile id, or None on Escape."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("up", "cursor(-1)", "Up", show=False),
    ]
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > Vertical {
        width: 90%; height: 80%; border: thick $primary; background: $surface; padding: 0 1;
    }
    ModelPicker DataTable { height: 1fr; }
    ModelPicker #hint { color: $text-muted; height: 1; }
    """

    def __init__(
        self, models: list[ModelRow], running: str | None = None, title: str = "Choose a model"
    ) -> None:
        super().__init__()
        self.models = models
        self.running = running
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Input(placeholder="type to filter; Enter starts the highlighted model")
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static("Enter: start   ↑/↓: move   Esc: cancel", id="hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.fill("")
        self.query_one(Input).focus()

    def fill(self, needle: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in self.models:
            if not matches(row, needle):
                continue
            running = row.id == self.running
            state = row.state
            table.add_row(
                Text("▶", style="bold green") if running else "",
                Text(row.id, style="bold" if running else ""),
                row.name,
                fmt(row.speed_tps, ".0f", " t/s") if row.speed_tps else DASH,
                fmt_ctx(row.ctx),
                describe_memory(row.memory.model_dump() if row.memory else None),
                row.best_for,
                Text(state, style=STATE_STYLES.get(state, "dim")),
                key=row.id,
            )
        if self.running and needle == "":
            ids = [r.id for r in self.models]
            if self.running in ids:
                table.move_cursor(row=ids.index(self.running))

    def on_input_changed(self, event: Input.Changed) -> None:
        self.fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.choose()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_cursor(self, step: int) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + step)))

    def choose(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            self.notify("no model matches", severity="warning")
            return
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        self.dismiss(str(key))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickerApp(App[str | None]):
    """`herd up` with no ID: the picker alone, returning the chosen id (None: cancelled)."""

    TITLE = "herd up"

    def __init__(self, models: list[ModelRow], running: str | None = None) -> None:
        super().__init__()
        self.models = models
        self.running = running

    def on_mount(self) -> None:
        self.push_screen(ModelPicker(self.models, self.running), self.exit)


def pick_model(models: list[ModelRow], running: str | None = None) -> str | None:
    return PickerApp(models, running).run()

"""The activity pane: the gateway's latest requests (GET /activity), one line each."""

from __future__ import annotations

import time

from rich.text import Text

from llamaherd.schema import ActivityRecord
from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, fmt

ROWS = 5


class ActivityPane(TextPanel):
    DEFAULT_CSS = f"""
    ActivityPane {{ height: {ROWS + 2}; border: round $primary; padding: 0 1;
                    text-wrap: nowrap; text-overflow: ellipsis; }}
    """

    def on_mount(self) -> None:
        self.border_title = "Requests"

    def show(self, records: list[ActivityRecord] | None) -> None:
        """Newest last; None: the daemon keeps no activity log (an older one)."""
        if not records:
            self.show_text(Text("no requests yet" if records is not None else DASH, "dim"))
            return
        text = Text()
        for n, record in enumerate(reversed(records[:ROWS])):
            if n:
                text.append("\n")
            ok = record.status is not None and record.status < 400 and not record.cancelled
            status = "left" if record.cancelled else str(record.status or DASH)
            text.append(time.strftime("%H:%M:%S ", time.localtime(record.at)), "dim")
            text.append(f"{status:>4} ", "green" if ok else "bold red")
            text.append(f"{record.model or record.requested or DASH:<16.16} ", "cyan")
            text.append(f"{record.endpoint:<22.22} ")
            text.append(
                f"in {fmt(record.prompt_tokens)} out {fmt(record.generated_tokens)} "
                f"{fmt(record.generation_tps, '.1f', ' t/s')} {fmt(record.duration_s, '.2f', 's')}"
            )
        self.show_text(text)

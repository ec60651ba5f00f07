"""The top line: which model, its state, uptime, context and live tokens/s."""

from __future__ import annotations

from rich.text import Text

from llamaherd.schema import Status, SystemSnapshot
from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, fmt, fmt_ctx, fmt_duration

STATE_STYLES = {
    "ready": "bold green",
    "starting": "bold yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
}


class DashHeader(TextPanel):
    """Rebuilt from /status (+ /models for ctx, /system for tokens/s) on every refresh."""

    DEFAULT_CSS = """
    DashHeader { height: 1; background: $boost; padding: 0 1; }
    """

    def show(
        self,
        status: Status | None,
        ctx: int | None = None,
        system: SystemSnapshot | None = None,
        note: str = "",
    ) -> None:
        if status is None:
            self.show_text(
                Text.assemble(("herd ", "bold"), ("disconnected", "bold red"), f"  {note}")
            )
            return
        model = status.model or "no model"
        state = status.state
        tps = DASH
        for server in system.servers if system else []:
            if server.model == status.model:
                tps = fmt(server.tokens_per_s, ".1f", " t/s")
        text = Text.assemble(
            ("herd ", "bold"),
            (model, "bold cyan"),
            "  ",
            (state, STATE_STYLES.get(state, "")),
            f"  up {fmt_duration(status.uptime_s)}",
            f"  ctx {fmt_ctx(ctx) if ctx is not None else DASH}",
            f"  {tps}",
        )
        if status.pid:
            text.append(f"  pid {status.pid}", "dim")
        if note:
            text.append(f"  {note}", "yellow")
        self.show_text(text)

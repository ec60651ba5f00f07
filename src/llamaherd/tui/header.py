"""The top line: which model, its state, uptime, context and live tokens/s."""

from __future__ import annotations

from rich.text import Text

from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, fmt, fmt_ctx, fmt_duration, get

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
        status: dict | None,
        ctx: object = None,
        system: dict | None = None,
        note: str = "",
    ) -> None:
        if status is None:
            self.show_text(
                Text.assemble(("herd ", "bold"), ("disconnected", "bold red"), f"  {note}")
            )
            return
        model = status.get("model") or "no model"
        state = str(status.get("state") or "stopped")
        tps = DASH
        for server in get(system, "servers") or []:
            if isinstance(server, dict) and server.get("model") == status.get("model"):
                tps = fmt(server.get("tokens_per_s"), ".1f", " t/s")
        text = Text.assemble(
            ("herd ", "bold"),
            (model, "bold cyan"),
            "  ",
            (state, STATE_STYLES.get(state, "")),
            f"  up {fmt_duration(status.get('uptime_s'))}",
            f"  ctx {fmt_ctx(ctx) if ctx is not None else DASH}",
            f"  {tps}",
        )
        if status.get("pid"):
            text.append(f"  pid {status['pid']}", "dim")
        if note:
            text.append(f"  {note}", "yellow")
        self.show_text(text)

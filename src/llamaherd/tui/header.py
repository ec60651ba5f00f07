"""The top two lines: which model (its display name), its state, uptime, context and
live tokens/s; then where to reach it: the web UI, the API and the management API, as the
original dashboard's control bar showed them."""

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
    """Rebuilt from /status (+ /models for name and ctx, /system for tokens/s) on every
    refresh. Each line is cut with an ellipsis: a wrapped first line (a long name and a
    note) would push the URLs out of the two rows."""

    DEFAULT_CSS = """
    DashHeader { height: 2; background: $boost; padding: 0 1;
                 text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(
        self,
        status: Status | None,
        ctx: int | None = None,
        system: SystemSnapshot | None = None,
        note: str = "",
        name: str | None = None,
    ) -> None:
        if status is None:
            self.show_text(
                Text.assemble(("herd ", "bold"), ("disconnected", "bold red"), f"  {note}")
            )
            return
        state = status.state
        tps = DASH
        for server in system.servers if system else []:
            if server.model == status.model:
                tps = fmt(server.tokens_per_s, ".1f", " t/s")
        text = Text.assemble(("herd ", "bold"), (name or status.model or "no model", "bold cyan"))
        if name and status.model and name != status.model:
            text.append(f" ({status.model})", "dim")  # the id, for `herd up ID` and the API
        text.append_text(
            Text.assemble(
                "  ",
                (state, STATE_STYLES.get(state, "")),
                f"  up {fmt_duration(status.uptime_s)}",
                f"  ctx {fmt_ctx(ctx) if ctx is not None else DASH}",
                f"  {tps}",
            )
        )
        if status.pid:
            text.append(f"  pid {status.pid}", "dim")
        if note:
            text.append(f"  {note}", "yellow")
        gateway = status.daemon.url.rstrip("/")
        text.append_text(
            Text.assemble(
                ("\nWeb ", "bold"),
                gateway,
                ("   API ", "bold"),
                f"{gateway}/v1",
                ("   Mgmt ", "bold"),
                status.daemon.api_url.rstrip("/"),
            )
        )
        self.show_text(text)

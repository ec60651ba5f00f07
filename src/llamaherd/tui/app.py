"""`herd dash`: the live dashboard, a client of the management API.

Everything it shows comes from the daemon (`/status`, `/models`, `/system`, `/logs`), so
it works against a daemon on another machine (`--url`, `HERD_API_KEY`) and survives the
daemon restarting: a failed poll shows "disconnected" and the next one reconnects.
Logs are followed by polling `/logs?since=` rather than SSE: one request per second
costs less than a held stream and needs no reconnect logic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, Static

from llamaherd.client import Unreachable
from llamaherd.errors import HerdError
from llamaherd.schema import (
    ActivityRecord,
    Failure,
    ModelRow,
    Status,
    SwitchDone,
    SwitchFailed,
    SystemSnapshot,
)
from llamaherd.tui.activity import ROWS, ActivityPane
from llamaherd.tui.gpu import GpuPanel
from llamaherd.tui.header import DashHeader
from llamaherd.tui.logchoice import FOLLOW_CURRENT, LogChoice
from llamaherd.tui.logpane import LogPane
from llamaherd.tui.panel import TextPanel
from llamaherd.tui.picker import ModelPicker
from llamaherd.tui.remote import Remote, bar
from llamaherd.tui.system import SystemPanel

SIDE_WIDTH = 68  # the GPU and System panels: a GPU's bar, numbers and sparkline
# Below this the layout breaks: the log pane needs 40 columns beside the side panels, and
# 20 rows leave it ~15 lines under the two header lines and the key bar (the original
# dashboard asked for 60x20 with no side column).
MIN_WIDTH, MIN_HEIGHT = SIDE_WIDTH + 40, 20
LOG_BACKLOG = 2000  # lines fetched when the pane starts over (the daemon keeps 2000)
NOT_RUNNING = -1  # LogPane.seen while it shows a stopped model's last failure
MODELS_EVERY = 10  # polls between /models refreshes (profiles rarely change)


class FailurePanel(TextPanel):
    """Why the model failed, and its log tail; hidden while nothing failed."""

    DEFAULT_CSS = """
    FailurePanel { display: none; height: auto; max-height: 14; border: round $error;
                   padding: 0 1; }
    FailurePanel.shown { display: block; }
    """

    def show(self, failure: Failure | SwitchFailed | None) -> None:
        self.set_class(failure is not None, "shown")
        if failure is None:
            return
        self.border_title = f"{failure.model} failed"
        reason = failure.reason if isinstance(failure, Failure) else failure.error
        text = Text(reason or "failed", "bold red")
        if isinstance(failure, SwitchFailed) and failure.restored:
            text.append(f"\nrestored the previous model: {failure.restored}", "yellow")
        for line in failure.log_tail[-10:]:
            text.append(f"\n| {line}", "dim")
        self.show_text(text)


class DashboardApp(App[str | None]):
    """Exits with "quit" (q: server stopped), "detach" (d: server left running) or None."""

    TITLE = "herd dash"
    CSS = f"""
    #main {{ height: 1fr; }}
    #left {{ width: 1fr; }}
    #side {{ width: {SIDE_WIDTH}; height: 1fr; overflow-y: auto; }}
    #too-small {{ display: none; width: 1fr; height: 1fr; content-align: center middle; }}
    """
    BINDINGS = [
        Binding("q", "quit_server", "Stop & quit"),
        Binding("r", "restart_menu", "Stop & menu"),
        Binding("m", "pick_model", "Models"),
        Binding("d", "detach", "Detach"),
        Binding("l", "choose_log", "Log of…"),
        Binding("slash", "search", "Search"),
    ]

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        interval: float = 1.0,
        resolve_url: Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        self.remote = Remote(url, api_key)
        self.api_key = api_key
        self.interval = interval
        self.resolve_url = resolve_url  # finds a restarted local daemon's (new) address
        self.status: Status | None = None
        self.system: SystemSnapshot | None = None
        self.activity: list[ActivityRecord] | None = None
        self.models: list[ModelRow] = []
        self.log_model: str | None = None  # None: follow the current model
        self.loading: tuple[str, float] | None = None  # (model, monotonic start) of a switch
        self.switch_failure: Failure | SwitchFailed | None = None
        self._log_pid: object = None
        self._polls = 0
        self._poll_lock = asyncio.Lock()

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="too-small")
        yield DashHeader(id="header")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield FailurePanel(id="failure")
                yield LogPane(id="logs")
                yield ActivityPane(id="activity")
            with Vertical(id="side"):
                yield GpuPanel(id="gpus")
                yield SystemPanel(id="system")
        yield Footer()

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    def on_resize(self, event: events.Resize) -> None:
        with contextlib.suppress(NoMatches):  # the first resize comes before compose
            self.fit_terminal(event.size.width, event.size.height)

    def fit_terminal(self, width: int, height: int) -> None:
        """Instead of a squeezed layout, say how big the terminal must be (as the
        original did); the panels come back as soon as it is."""
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen = self.screen_stack[0]  # the dashboard: the picker may be on top
        notice = screen.query_one("#too-small", Static)
        notice.display = small
        screen.query_one(DashHeader).display = screen.query_one("#main").display = not small
        if small:
            notice.update(f"Terminal too small ({width}x{height}). Need {MIN_WIDTH}x{MIN_HEIGHT}.")

    def on_mount(self) -> None:
        self.fit_terminal(self.size.width, self.size.height)
        self.log_pane.log_widget.focus()
        self.run_worker(self._poll_forever(), name="poll", group="poll")

    async def on_unmount(self) -> None:
        # The polls first: one still running would send on the closed client.
        self.workers.cancel_group(self, "poll")
        await self.remote.aclose()

    # -- polling -----------------------------------------------------------------
    async def _poll_forever(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        """One refresh of every panel; a dead daemon is shown, not raised."""
        # NoMatches: the app is closing (q, d) while an answer was on its way.
        async with self._poll_lock:
            with contextlib.suppress(NoMatches):
                await self._poll_and_draw()

    async def _poll_and_draw(self) -> None:
        try:
            await self._poll()
        except Unreachable as error:
            self.status = None
            await self._reconnect()
            self.query_one(DashHeader).show(None, note=f"{error}; retrying")
        except HerdError as error:  # an error answer: a wrong key, an unexpected shape
            self.query_one(DashHeader).show(None, note=str(error))

    async def _reconnect(self) -> None:
        if self.resolve_url is None:
            return
        try:
            url = self.resolve_url().rstrip("/")
        except Exception:  # noqa: BLE001 - a missing record just means "not yet"
            return
        if url != self.remote.url:
            old, self.remote = self.remote, Remote(url, self.api_key)
            await old.aclose()

    async def _poll(self) -> None:
        status = await self.remote.status()
        if not self.models or self._polls % MODELS_EVERY == 0 or self.status is None:
            self.models = await self.remote.models()
        self._polls += 1
        self.status = status
        self.system = await self.remote.system()
        self.activity = await self.remote.activity(ROWS)
        # The log first, then the panels with no await in between: everything a poll
        # changes lands in one screen update instead of two (each costs a compositor pass).
        try:
            await self._follow_log()
        finally:
            self._draw()

    def _draw(self) -> None:
        status = self.status
        current = status.model if status else None
        row = next((m for m in self.models if m.id == current), None)
        note = ""
        if self.loading:
            note = f"loading {self.loading[0]} {time.monotonic() - self.loading[1]:.0f}s"
        if status and status.state == "starting" and status.progress is not None:
            # llama-server's own progress (runtime/loading.py): a bar and the stage.
            note = f"{bar(status.progress, 10)} {status.progress:.0%} {status.stage}  {note}"
        kept = status.kv_cache.get(current or "") if status else None
        restored = kept.last_restore.tokens if kept and kept.last_restore else 0
        if not note and status and status.state == "ready" and restored:
            note = f"prompt cache restored: {restored} tokens"  # docs/kv-keep.md
        header = self.query_one(DashHeader)
        header.show(status, row.ctx if row else None, self.system, note, row.name if row else None)
        self.query_one(GpuPanel).show(self.system, status.devices if status else None)
        self.query_one(SystemPanel).show(self.system)
        self.query_one(ActivityPane).show(self.activity)
        self.query_one(FailurePanel).show(self.current_failure())

    def display_name(self, model: str | None) -> str:
        """A profile's name, as the original's header and switch lines showed it."""
        row = next((m for m in self.models if m.id == model), None)
        return row.name if row and row.name else model or "no model"

    def current_failure(self) -> Failure | SwitchFailed | None:
        """The failed switch we started, else the current model's failure while it is failed."""
        if self.switch_failure:
            return self.switch_failure
        if self.status and self.status.state == "failed":
            return self.status.last_error
        return None

    async def _follow_log(self) -> None:
        status = self.status
        target = self.log_model or (status.model if status else None)
        pane = self.log_pane
        loaded = next((m for m in status.loaded if m.model == target), None) if status else None
        pid = loaded.pid if loaded else None
        if target != pane.model or (pid and pid != self._log_pid and pane.seen != 0):
            # Another model, or the same one restarted: a new log. Following the current
            # model, the old lines stay above a marker (as the original dashboard kept
            # them across a switch); a log picked with `l` starts on a clean pane.
            marker = None
            if self.log_model is None and pane.model is not None:
                name = self.display_name(target)
                marker = f"--- Switching to {name} ---"
                if target == pane.model:
                    marker = f"--- {name} restarted ---"
            pane.reset(target, marker)
        self._log_pid = pid or self._log_pid
        pane.set_title(f"log: {target or 'no model'}" + ("" if self.log_model else " (current)"))
        if target is None or (pane.seen > 0 and loaded and loaded.log_lines == pane.seen):
            return  # nothing new (the status says how many lines there are)
        since = pane.seen if pane.seen > 0 else None
        tail = LOG_BACKLOG if since is None else 100_000
        answer = await self.remote.logs(tail=tail, since=since, model=target)
        total = answer.total
        if total is None:  # not running: the daemon answers with its last failure's tail
            if pane.seen != NOT_RUNNING:
                pane.add(answer.lines)
                pane.add([f"[herd] {target} is not running"])
                pane.seen = NOT_RUNNING
            return
        if pane.seen == NOT_RUNNING or total < pane.seen:
            pane.reset(target, f"--- {self.display_name(target)} started again ---")
            answer = await self.remote.logs(tail=LOG_BACKLOG, since=None, model=target)
            total = answer.total or 0
        pane.add(answer.lines)
        pane.seen = total

    # -- actions -----------------------------------------------------------------
    async def _stop_all(self) -> bool:
        try:
            await self.remote.stop()
        except HerdError as error:
            self.notify(f"could not stop the server: {error}", severity="error")
            return False
        return True

    async def action_quit_server(self) -> None:
        """q: stop the server, then leave (as the original dashboard did)."""
        if await self._stop_all():
            self.exit("quit")

    def action_detach(self) -> None:
        """d: leave the dashboard, keep the model serving."""
        self.exit("detach")

    async def action_restart_menu(self) -> None:
        """r: stop the server and offer the model menu again."""
        if await self._stop_all():
            self.switch_failure = None
            await self.poll_once()
            await self._open_picker("Stopped. Start which model?")

    async def action_pick_model(self) -> None:
        await self._open_picker("Switch to")

    async def _open_picker(self, title: str) -> None:
        try:
            self.models = await self.remote.models()
        except HerdError as error:
            self.notify(str(error), severity="error")
            return
        status = self.status
        running = status.model if status and status.state == "ready" else None
        self.push_screen(ModelPicker(self.models, running, title), self._picked)

    def _picked(self, model: str | None) -> None:
        if model:
            self.run_worker(self.switch_to(model), group="switch", exclusive=True)

    async def switch_to(self, model: str) -> SwitchDone | SwitchFailed | None:
        """POST /switch, showing progress in the header and a failure with its log tail."""
        self.loading = (model, time.monotonic())
        self.switch_failure = None
        self.log_model = None
        self.notify(f"starting {model}…", timeout=2)
        try:
            answer: SwitchDone | SwitchFailed | None = await self.remote.switch(model)
            error = answer.error if isinstance(answer, SwitchFailed) else None
        except HerdError as failed:  # no answer, or an error answer (unknown model)
            answer, error = None, str(failed)
        finally:
            self.loading = None
        if isinstance(answer, SwitchDone):
            self.notify(f"{model} is ready")
        else:
            self.switch_failure = answer or Failure(
                model=model, reason=error or "failed", kind="start", log_tail=[], at=time.time()
            )
            self.notify(f"{model} failed: {error}", severity="error", timeout=8)
        await self.poll_once()
        return answer

    def action_choose_log(self) -> None:
        status = self.status
        loaded = [m.model for m in status.loaded if m.model] if status else []
        names = loaded + [m.id for m in self.models if m.id not in loaded]
        self.push_screen(LogChoice(names, self.log_pane.model), self._log_chosen)

    def _log_chosen(self, choice: str | None) -> None:
        if choice is None:
            return
        self.log_model = None if choice == FOLLOW_CURRENT else choice
        self.run_worker(self.poll_once(), group="poll-now")

    def action_search(self) -> None:
        self.log_pane.open_search()


def run_dashboard(
    url: str, api_key: str | None = None, resolve_url: Callable[[], str] | None = None
) -> str | None:
    """Run the dashboard in this terminal; returns how it was left ("quit", "detach")."""
    return DashboardApp(url, api_key, resolve_url=resolve_url).run()

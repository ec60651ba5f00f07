"""The one owner of llama-server state: which model runs, in what state, and switching.

States: stopped -> starting -> ready -> stopping -> stopped, and failed (with the reason
and the log tail). Only the supervisor changes them, and switches are serialized by one
lock, so a client never sees a half-switched server. A failed switch starts the previous
model again and says so (``restored``).

Gateway requests go through `serving()`: they are counted while in flight, a switch waits
for them to finish (up to drain_timeout) before it stops a server, and requests that
arrive during a switch wait in a bounded queue instead of meeting a refused connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from llamaherd import runtime
from llamaherd.argv import server_argv, server_env
from llamaherd.config import Config, Profile

TAIL_ON_ERROR = 30


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass
class Failure:
    model: str
    reason: str
    log_tail: list[str]
    at: float = field(default_factory=time.time)


class Busy(Exception):
    """The switch queue is full, or a request waited too long for a switch (503)."""


class Unavailable(Exception):
    """No model can serve the request: none runs, or the one asked for failed to start."""


@dataclass
class SwitchResult:
    ok: bool
    model: str
    error: str | None = None
    restored: str | None = None  # the model running again after a failed switch
    log_tail: list[str] = field(default_factory=list)


class Supervisor:
    def __init__(self, config: Config, llama_server: Path, run_dir: Path) -> None:
        self.config = config
        self.llama_server = llama_server
        self.run_dir = run_dir
        self.state = State.STOPPED
        self.model: str | None = None  # the profile id in `state`
        self.server: runtime.ServerProcess | None = None
        self.last_error: Failure | None = None
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self.in_flight = 0  # gateway requests being served right now
        self.waiting = 0  # gateway requests queued behind a switch
        self._drained = asyncio.Event()
        self._drained.set()

    # -- queries ---------------------------------------------------------------
    def state_of(self, model_id: str) -> State:
        return self.state if model_id == self.model else State.STOPPED

    def status(self) -> dict:
        server = self.server
        return {
            "model": self.model,
            "state": str(self.state),
            "pid": server.pid if server else None,
            "port": server.port if server else None,
            "url": server.url if server and self.state == State.READY else None,
            "started_at": server.started_at if server else None,
            "uptime_s": round(time.time() - server.started_at, 1) if server else None,
            "argv": server.argv if server else None,
            "log_file": str(server.log_path) if server else None,
            "last_error": _failure_json(self.last_error),
        }

    def logs(self, tail: int, since: int | None = None) -> dict:
        """The running model's log tail (or the last failure's), with a line counter."""
        if self.server:
            return {
                "model": self.model,
                "lines": self.server.log_tail(tail, since),
                "total": self.server.line_count,
            }
        lines = self.last_error.log_tail[-tail:] if self.last_error and tail > 0 else []
        return {"model": self.model, "lines": lines, "total": None}

    # -- commands --------------------------------------------------------------
    async def switch(self, model_id: str) -> SwitchResult:
        """Make `model_id` the running model; on failure bring the previous one back."""
        profile = self.config.resolve(model_id)
        async with self._lock:
            if self.model == profile.id and self.state == State.READY:
                return SwitchResult(ok=True, model=profile.id)
            previous = self.model if self.state == State.READY else None
            await self._stop_locked()
            failure = await self._start_locked(profile)
            if failure is None:
                return SwitchResult(ok=True, model=profile.id)
            restored = None
            if previous and previous != profile.id:
                if await self._start_locked(self.config.resolve(previous)) is None:
                    restored = previous
                # Whatever happened while restoring, the switch's own failure is the news.
                self.last_error = failure
            return SwitchResult(
                ok=False,
                model=profile.id,
                error=failure.reason,
                restored=restored,
                log_tail=failure.log_tail,
            )

    @contextlib.asynccontextmanager
    async def serving(self, model_id: str | None) -> AsyncIterator[runtime.ServerProcess]:
        """A ready server for `model_id` (None: whichever runs), held as in flight.

        Switches first when another model is asked for. Raises Busy when the queue is
        full or the wait too long, Unavailable when no model can serve.
        """
        if not self._serves(model_id):
            await self._wait_for(model_id)
        server = self.server
        assert server is not None
        self.in_flight += 1
        self._drained.clear()
        try:
            yield server
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._drained.set()

    def _serves(self, model_id: str | None) -> bool:
        return (
            not self._lock.locked() and self.state == State.READY and model_id in (None, self.model)
        )

    async def _wait_for(self, model_id: str | None) -> None:
        settings = self.config.server
        if self.waiting >= settings.queue_size:
            raise Busy(f"{self.waiting} requests already wait for a model switch")
        self.waiting += 1
        try:
            async with asyncio.timeout(settings.queue_timeout):
                while not self._serves(model_id):
                    target = model_id or self.model or self.config.default_model
                    if target is None:
                        raise Unavailable("no model is running; name a profile in `model`")
                    result = await self.switch(target)
                    if not result.ok:
                        raise Unavailable(f"{result.model} failed to start: {result.error}")
        except TimeoutError:
            raise Busy(f"waited {settings.queue_timeout:g}s for a model switch") from None
        finally:
            self.waiting -= 1

    async def stop(self) -> str | None:
        """Stop the running model; return its id (None when nothing ran)."""
        async with self._lock:
            stopped = self.model if self.server else None
            await self._stop_locked()
            return stopped

    # -- internals (hold the lock) -----------------------------------------------
    async def _start_locked(self, profile: Profile) -> Failure | None:
        port = runtime.free_port()
        argv = server_argv(self.llama_server, profile, host="127.0.0.1", port=port)
        self.model, self.state = profile.id, State.STARTING
        try:
            self.server = await runtime.start(
                argv,
                env=server_env(profile, os.environ),
                port=port,
                run_dir=self.run_dir,
                name=profile.id,
            )
        except OSError as error:
            return self._fail(profile.id, f"cannot start {argv[0]}: {error}", [])
        try:
            await self.server.wait_ready(self.config.server.start_timeout)
        except RuntimeError as error:
            tail = self.server.log_tail(TAIL_ON_ERROR)
            await self.server.stop(self.config.server.stop_timeout)
            self.server = None
            return self._fail(profile.id, str(error), tail)
        self.state = State.READY
        self._watcher = asyncio.create_task(self._watch(self.server))
        return None

    async def _stop_locked(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            self._watcher = None
        if self.server:
            self.state = State.STOPPING
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.server.drain_timeout):
                    await self._drained.wait()  # let in-flight requests finish
            await self.server.stop(self.config.server.stop_timeout)
            self.server = None
        self.model, self.state = None, State.STOPPED

    def _fail(self, model_id: str, reason: str, tail: list[str]) -> Failure:
        self.last_error = Failure(model_id, reason, tail)
        self.model, self.state = model_id, State.FAILED
        return self.last_error

    async def _watch(self, server: runtime.ServerProcess) -> None:
        """Notice a ready server dying on its own and mark it failed with its log tail."""
        with contextlib.suppress(asyncio.CancelledError):
            code = await server.process.wait()
            async with self._lock:
                if self.server is not server:
                    return
                await server.stop(0)  # reap its process group and its record
                self.server, self._watcher = None, None
                reason = f"llama-server exited unexpectedly with code {code}"
                self._fail(self.model or "?", reason, server.log_tail(TAIL_ON_ERROR))


def _failure_json(failure: Failure | None) -> dict | None:
    if failure is None:
        return None
    return {
        "model": failure.model,
        "reason": failure.reason,
        "log_tail": failure.log_tail,
        "at": failure.at,
    }

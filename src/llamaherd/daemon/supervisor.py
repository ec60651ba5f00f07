"""The one owner of llama-server state: which models run, in what state, and switching.

Each model goes stopped -> starting -> ready -> stopping -> stopped, or failed (with the
reason and the log tail). Only the supervisor changes states, and every start and stop
happens under one lock, so switches are serialized and a client never sees a
half-switched server.

- `switch(id)` makes a model the *current* one (what requests without a `model` get).
  Up to `[server] max_loaded` models stay running; to make room, the least recently used
  idle model that is not `persistent` is stopped. A failed switch starts the evicted
  model again and says so (`restored`).
- Gateway requests go through `serving(id)`: counted while in flight (a model is only
  stopped once its requests finished, or after drain_timeout), and queued (bounded by
  queue_size and queue_timeout) while the model they need is being started.
- A llama-server that dies on its own is noticed at once, recorded with its exit code
  and log tail, and restarted with backoff when its profile says `restart = "on-failure"`.
- A model idle for longer than its `ttl` is stopped (and started again on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from llamaherd import runtime as runtimes
from llamaherd.config import Config, Profile
from llamaherd.daemon.events import EventBus
from llamaherd.gguf.budget import MemoryCheck
from llamaherd.runtime import process, rpc

TAIL_ON_ERROR = 30
CRASH_WINDOW = 3600.0  # crashes older than this no longer count against max_restarts
MAX_BACKOFF = 30.0
TTL_CHECK_INTERVAL = 1.0


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


class Busy(Exception):
    """The switch queue is full, or a request waited too long for a switch (503)."""


class Unavailable(Exception):
    """No model can serve the request: none runs, or the one asked for failed to start."""


@dataclass
class Failure:
    model: str
    reason: str
    log_tail: list[str]
    at: float = field(default_factory=time.time)


@dataclass
class SwitchResult:
    ok: bool
    model: str
    error: str | None = None
    restored: str | None = None  # the model running again after a failed switch
    log_tail: list[str] = field(default_factory=list)
    noop: bool = False  # the model was already ready: nothing was started


@dataclass
class Model:
    """One model the supervisor has started: its process, state and traffic."""

    profile: Profile
    state: State = State.STOPPED
    server: process.ServerProcess | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None
    crashes: list[float] = field(default_factory=list)
    failure: Failure | None = None
    workers: list[rpc.WorkerCheck] = field(default_factory=list)  # checked at each start

    @property
    def id(self) -> str:
        return self.profile.id

    def summary(self) -> dict:
        server = self.server
        return {
            "model": self.id,
            "state": str(self.state),
            "pid": server.pid if server else None,
            "port": server.port if server else None,
            "url": server.url if server and self.state == State.READY else None,
            "started_at": server.started_at if server else None,
            "uptime_s": round(time.time() - server.started_at, 1) if server else None,
            "in_flight": self.in_flight,
            "idle_s": round(time.monotonic() - self.last_used, 1),
            "restarts": len(self.crashes),
            "argv": server.argv if server else None,
            "log_file": str(server.log_path) if server else None,
            "log_lines": server.line_count if server else None,
            "runtime": self.profile.runtime,
            "rpc": [w.as_json() for w in self.workers],
        }


class Supervisor:
    def __init__(self, config: Config, llama_server: Path, run_dir: Path) -> None:
        self.config = config
        self.llama_server = llama_server
        self.run_dir = run_dir
        self.models: dict[str, Model] = {}
        self.current: str | None = None  # what requests without a `model` are served by
        self.last_error: Failure | None = None
        self.waiting = 0  # gateway requests queued behind a switch
        self.events = EventBus()
        self.memory = MemoryCheck()  # the planner's VRAM estimate (gguf/budget.py)
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    def _set_state(self, model: Model, state: State, **details: object) -> None:
        """Every state change goes through here, so /events sees all of them."""
        model.state = state
        self.events.publish("state", model=model.id, state=str(state), **details)

    # -- queries ---------------------------------------------------------------
    def state_of(self, model_id: str) -> State:
        model = self.models.get(model_id)
        return model.state if model else State.STOPPED

    def status(self) -> dict:
        """The current model's fields at the top level, every started model in `loaded`."""
        current = self.models.get(self.current or "")
        if current:
            top = current.summary()
        else:  # nothing started yet, or everything stopped
            top = {
                "model": self.current,
                "state": str(State.STOPPED),
                "pid": None,
                "port": None,
                "url": None,
                "uptime_s": None,
            }
        return {
            **top,
            "loaded": [m.summary() for m in self.models.values() if m.state != State.STOPPED],
            "stale": self.stale(),
            "waiting": self.waiting,
            "last_error": _failure_json(self.last_error),
        }

    def logs(self, tail: int, since: int | None = None, model_id: str | None = None) -> dict:
        """A model's log tail (default: the current one; or its last failure's)."""
        model = self.models.get(model_id or self.current or "")
        if model and model.server:
            return {
                "model": model.id,
                "lines": model.server.log_tail(tail, since),
                "total": model.server.line_count,
            }
        failure = model.failure if model else self.last_error
        lines = failure.log_tail[-tail:] if failure and tail > 0 else []
        return {"model": model.id if model else self.current, "lines": lines, "total": None}

    # -- commands --------------------------------------------------------------
    async def switch(self, model_id: str, *, restart: bool = False) -> SwitchResult:
        """Make `model_id` the current model, starting it if needed (or again, with
        `restart`: e.g. after its profile changed); on failure bring the model that was
        evicted for it back."""
        profile = self.config.resolve(model_id)
        async with self._lock:
            began = time.monotonic()
            model = self.models.get(profile.id)
            if restart and model:
                await self._stop_locked(model)
            result = await self._switch_locked(profile)
        if not result.noop:
            self.events.publish(
                "switch",
                model=result.model,
                ok=result.ok,
                error=result.error,
                restored=result.restored,
                duration_s=round(time.monotonic() - began, 3),
            )
        return result

    async def _switch_locked(self, profile: Profile) -> SwitchResult:
        previous = self.current
        self.current = profile.id  # requests without a model now wait for this one
        model = self.models.get(profile.id)
        if model and model.state == State.READY:
            model.last_used = time.monotonic()
            return SwitchResult(ok=True, model=profile.id, noop=True)
        evicted, problem = await self._make_room_locked(profile)
        failure = problem or await self._start_locked(profile)
        if failure is None:
            return SwitchResult(ok=True, model=profile.id)
        restored = None
        for other in evicted:
            if await self._start_locked(other) is None:
                restored = restored or other.id
        self.last_error = failure  # the switch's own failure is the news, not the restore
        back = restored or previous
        if back and self.state_of(back) == State.READY:
            self.current = back
        return SwitchResult(
            ok=False,
            model=profile.id,
            error=failure.reason,
            restored=restored,
            log_tail=failure.log_tail,
        )

    async def stop(self, model_id: str | None = None) -> list[str]:
        """Stop one model, or all; return the ids that were running."""
        async with self._lock:
            targets = [self.models[model_id]] if model_id in self.models else []
            if model_id is None:
                targets = list(self.models.values())
            stopped = [m.id for m in targets if m.server]
            for model in targets:
                await self._stop_locked(model)
                del self.models[model.id]
            if self.current not in self.models:
                self.current = None
            return stopped

    def apply_config(self, config: Config) -> dict:
        """Use a re-read herd.toml. Running models keep running with their old profile
        until switched with restart; the listening host and ports need a daemon restart."""
        bound = ("host", "port", "api_port")
        ignored = [
            key for key in bound if getattr(config.server, key) != getattr(self.config.server, key)
        ]
        config.server = config.server.model_copy(
            update={key: getattr(self.config.server, key) for key in bound}
        )
        self.config = config
        return {"ok": True, "stale": self.stale(), "needs_daemon_restart": ignored}

    def stale(self) -> list[str]:
        """Running models whose profile in the config is no longer the one they run with."""
        return [
            m.id
            for m in self.models.values()
            if m.server and self.config.models.get(m.id) != m.profile
        ]

    async def close(self) -> None:
        """Stop background work and every model (daemon shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.stop()

    def start_background_work(self, first_model: str | None = None) -> None:
        """TTL unloading, for the daemon's lifetime; and the first model, if one is named
        (its failure, if any, shows in last_error)."""
        self._spawn(self._expire_idle_forever())
        if first_model:
            self._spawn(self.switch(first_model))

    # -- serving gateway requests ------------------------------------------------
    @contextlib.asynccontextmanager
    async def serving(self, model_id: str | None) -> AsyncIterator[Model]:
        """A ready model for `model_id` (None: the current one), held as in flight.

        Starts it first when needed. Raises Busy when the queue is full or the wait too
        long, Unavailable when no model can serve.
        """
        model = self._ready(model_id) or await self._wait_for(model_id)
        model.in_flight += 1
        model.drained.clear()
        model.last_used = time.monotonic()
        try:
            yield model
        finally:
            model.in_flight -= 1
            model.last_used = time.monotonic()
            if model.in_flight == 0:
                model.drained.set()

    def _ready(self, model_id: str | None) -> Model | None:
        model = self.models.get(model_id or self.current or "")
        return model if model and model.state == State.READY else None

    async def _wait_for(self, model_id: str | None) -> Model:
        settings = self.config.server
        if self.waiting >= settings.queue_size:
            raise Busy(f"{self.waiting} requests already wait for a model switch")
        self.waiting += 1
        try:
            async with asyncio.timeout(settings.queue_timeout):
                while (model := self._ready(model_id)) is None:
                    target = model_id or self.current or self.config.default_model
                    if target is None:
                        raise Unavailable("no model is running; name a profile in `model`")
                    result = await self.switch(target)
                    if not result.ok:
                        raise Unavailable(f"{result.model} failed to start: {result.error}")
                return model
        except TimeoutError:
            raise Busy(f"waited {settings.queue_timeout:g}s for a model switch") from None
        finally:
            self.waiting -= 1

    # -- internals (hold the lock) -----------------------------------------------
    async def _make_room_locked(self, profile: Profile) -> tuple[list[Profile], Failure | None]:
        """Stop models until `profile` may start beside the others; return what was stopped.

        Beside means: fewer than max_loaded run, and (where the GPUs' sizes are known and
        the profile pins its placement) the planner's estimate fits on the GPUs."""
        evicted: list[Profile] = []
        while True:
            running = [m for m in self.models.values() if m.server and m.id != profile.id]
            conflict = None
            if len(running) < self.config.server.max_loaded:
                others = [m.profile for m in running]
                conflict = await asyncio.to_thread(self.memory.conflict, profile, others)
                if conflict is None:
                    return evicted, None
            candidates = [m for m in running if not m.profile.persistent]
            if not candidates:
                why = conflict or f"max_loaded = {self.config.server.max_loaded}"
                reason = (
                    f"no room: {why} and the running models are persistent "
                    f"({', '.join(m.id for m in running)})"
                )
                return evicted, self._fail(profile, reason, [])
            # Idle models first, then the least recently used.
            victim = min(candidates, key=lambda m: (m.in_flight > 0, m.last_used))
            await self._stop_locked(victim)
            del self.models[victim.id]
            evicted.append(victim.profile)

    async def _start_locked(self, profile: Profile) -> Failure | None:
        model = self.models.setdefault(profile.id, Model(profile))
        model.profile, model.failure = profile, None
        self._set_state(model, State.STARTING)
        # Workers first: llama-server would otherwise die in its RPC handshake, and say
        # less clearly which worker was missing.
        model.workers = await rpc.check_all(profile.rpc)
        if reason := rpc.unreachable_reason(model.workers):
            return self._fail(profile, reason, [])
        port = process.free_port()
        launcher = runtimes.pick(self.config, self.llama_server, profile)
        try:
            model.server = await launcher.start(profile, port=port, run_dir=self.run_dir)
        except OSError as error:
            program = launcher.command(profile, port)[0]
            return self._fail(profile, f"cannot start {program}: {error}", [])
        try:
            await model.server.wait_ready(
                self.config.server.start_timeout,
                progress=lambda elapsed: self.events.publish(
                    "loading", model=profile.id, elapsed_s=round(elapsed, 1)
                ),
            )
        except RuntimeError as error:
            tail = model.server.log_tail(TAIL_ON_ERROR)
            await model.server.stop(self.config.server.stop_timeout)
            model.server = None
            return self._fail(profile, str(error), tail)
        self._set_state(model, State.READY, pid=model.server.pid)
        model.last_used = time.monotonic()
        model.drained.set()
        model.watcher = asyncio.create_task(self._watch(model, model.server))
        return None

    async def _stop_locked(self, model: Model) -> None:
        if model.watcher:
            model.watcher.cancel()
            model.watcher = None
        if model.server:
            self._set_state(model, State.STOPPING)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.server.drain_timeout):
                    await model.drained.wait()  # let in-flight requests finish
            await model.server.stop(self.config.server.stop_timeout)
            model.server = None
        self._set_state(model, State.STOPPED)

    def _fail(self, profile: Profile, reason: str, tail: list[str]) -> Failure:
        model = self.models.setdefault(profile.id, Model(profile))
        model.failure = Failure(profile.id, reason, tail)
        self._set_state(model, State.FAILED, reason=reason)
        self.last_error = model.failure
        return model.failure

    # -- background work ---------------------------------------------------------
    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch(self, model: Model, server: process.ServerProcess) -> None:
        """Notice a ready server dying on its own; record it and restart per policy."""
        code = await server.process.wait()
        async with self._lock:
            if model.server is not server:
                return  # stopped on purpose meanwhile
            await server.stop(0)  # reap its process group and its record
            model.server, model.watcher = None, None
            reason = f"llama-server exited unexpectedly with code {code}"
            self.events.publish("crash", model=model.id, code=code)
            self._fail(model.profile, reason, server.log_tail(TAIL_ON_ERROR))
            if self._may_restart(model):
                self._spawn(self._restart_later(model))

    def _may_restart(self, model: Model) -> bool:
        now = time.time()
        model.crashes = [t for t in model.crashes if now - t < CRASH_WINDOW] + [now]
        profile = model.profile
        return profile.restart == "on-failure" and len(model.crashes) <= profile.max_restarts

    async def _restart_later(self, model: Model) -> None:
        """Start a crashed model again after a backoff (1 s, 2 s, 4 s ... 30 s)."""
        while True:
            await asyncio.sleep(min(MAX_BACKOFF, 2.0 ** (len(model.crashes) - 1)))
            async with self._lock:
                if self.models.get(model.id) is not model or model.state != State.FAILED:
                    return  # someone switched, stopped or restarted it meanwhile
                self.events.publish("restart", model=model.id, attempt=len(model.crashes))
                if await self._start_locked(model.profile) is None:
                    return
                if not self._may_restart(model):
                    return

    async def _expire_idle_forever(self) -> None:
        while True:
            await asyncio.sleep(TTL_CHECK_INTERVAL)
            now = time.monotonic()
            for model in list(self.models.values()):
                ttl = model.profile.ttl
                if (
                    ttl
                    and model.state == State.READY
                    and model.in_flight == 0
                    and now - model.last_used > ttl
                ):
                    async with self._lock:
                        # Checked again: a request may have come in while we waited.
                        if model.state == State.READY and model.in_flight == 0:
                            self.events.publish("unload", model=model.id, reason="ttl", ttl=ttl)
                            await self._stop_locked(model)


def _failure_json(failure: Failure | None) -> dict | None:
    if failure is None:
        return None
    return {
        "model": failure.model,
        "reason": failure.reason,
        "log_tail": failure.log_tail,
        "at": failure.at,
    }

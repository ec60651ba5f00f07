"""The one owner of llama-server state: which models run, in what state, and switching.

- Every state change is checked against daemon/model.py's table and emits one event.
- **Starts belong to the supervisor**: each is a task of its own; `POST /switch` and
  gateway requests wait on it shielded (a timeout or a client leaving never cancels it)
  and share one attempt per model. Any error while starting stops the server and records
  `failed`; requests then get that failure at once until the profile or file changes or
  `retry_failed_after` passes.
- **One admission path** (`_admit_locked`, daemon/scheduler.py decides) for switches,
  requests, crash restarts (which never evict: a model no longer wanted stays down) and
  TTL expiry.
- Gateway requests go through `serving(id)`: counted in flight (a model stops once they
  finished, or after drain_timeout), queued (queue_size, queue_timeout) during a start.
- Every start and stop happens under one lock: nobody sees a half-switched server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from llamaherd import runtime
from llamaherd.config import Config, Profile
from llamaherd.config.checks import missing_model_file
from llamaherd.daemon import scheduler
from llamaherd.daemon.events import EventBus
from llamaherd.daemon.kvkeep import KvKeep
from llamaherd.daemon.memory import Memory, Placement
from llamaherd.daemon.model import (
    Failure,
    FailureKind,
    Handover,
    Model,
    State,
    SwitchResult,
    any_drains,
    file_stamp,
)
from llamaherd.daemon.requests import ServesRequests
from llamaherd.daemon.turns import Turns
from llamaherd.errors import UsageError
from llamaherd.runtime import Runtime, Server, rpc
from llamaherd.runtime.process import free_port

log = logging.getLogger(__name__)

TAIL_ON_ERROR = 30
MAX_BACKOFF = 30.0
TTL_CHECK_INTERVAL = 1.0


class Supervisor(ServesRequests):
    def __init__(
        self,
        config: Config,
        llama_server: Path,
        run_dir: Path,
        *,
        runtime_for: Callable[[Profile], Runtime] | None = None,
    ) -> None:
        self.config = config
        self.llama_server = llama_server
        self.run_dir = run_dir
        # The runtime a profile runs on; the tests' fake stands in here.
        self._runtime_for = runtime_for or (
            lambda profile: runtime.pick(self.config, self.llama_server, profile)
        )
        self.models: dict[str, Model] = {}
        self.current: str | None = None  # what requests without a `model` are served by
        self.last_error: Failure | None = None
        self.queued: collections.Counter[str] = collections.Counter()  # requests waiting
        self.events = EventBus()
        self.kv = KvKeep(llama_server, run_dir, self.events)  # prompt caches across swaps
        self.memory = Memory(config.server, run_dir)  # what fits where (daemon/memory.py)
        self._lock = Turns()  # one change at a time; waiting starts by priority
        self._attempts: dict[str, asyncio.Task[SwitchResult]] = {}  # starts under way
        self._handover = Handover()  # requests waiting for starts
        self._background: set[asyncio.Task[Any]] = set()

    def _enter(self, model: Model, state: State, **details: object) -> None:
        """Every state change goes through here: checked, and seen by /events."""
        previous = model.enter(state)
        self.events.publish(
            "state", model=model.id, state=str(state), previous=str(previous), **details
        )

    # -- queries ---------------------------------------------------------------
    def state_of(self, model_id: str) -> State:
        model = self.models.get(model_id)
        return model.state if model else State.STOPPED

    def status(self) -> dict:
        """The current model's fields at the top level, every started model in `loaded`."""
        current = self.models.get(self.current or "")
        top = current.summary() if current else Model.stopped_summary(self.current)
        return {
            **top,
            "loaded": [m.summary() for m in self.models.values() if m.state != State.STOPPED],
            "stale": self.stale(),
            "waiting": self.waiting,
            "queue": {model: n for model, n in self.queued.items() if n},
            "last_error": self.last_error.as_json() if self.last_error else None,
            "devices": self.memory.devices([m for m in self.models.values() if m.server]),
            "kv_cache": self.kv.status(),
        }

    def logs(self, tail: int, since: int | None = None, model_id: str | None = None) -> dict:
        """A model's log tail (default: the current one; or its last failure's)."""
        if model := self.models.get(model_id or self.current or ""):
            return model.log_page(tail, since)
        lines = self.last_error.log_tail[-tail:] if self.last_error and tail > 0 else []
        return {"model": self.current, "lines": lines, "total": None}

    # -- commands --------------------------------------------------------------
    async def switch(
        self, model_id: str, *, restart: bool = False, retry: bool = True
    ) -> SwitchResult:
        """Make `model_id` the current model, starting it if needed (or again, with
        `restart`); a failure brings back what was evicted for it. `retry=False` answers
        a recent start failure without starting again."""
        profile = self.config.resolve(model_id)
        if restart and (missing := missing_model_file(self.config, profile)):
            raise missing  # before stopping it: the running server still serves
        if restart:
            async with self._lock:
                if model := self.models.get(profile.id):
                    await self._stop_locked(model)
        return await self._await(self._attempt_for(profile, retry=retry), profile.id)

    async def stop(self, model_id: str | None = None) -> list[str]:
        """Stop one model, or all, starts under way included; return the ids that ran."""
        cancelled = [t for m, t in self._attempts.items() if model_id in (None, m)]
        for task in cancelled:
            task.cancel()  # the start stops whatever it had started (_start_locked)
        await asyncio.gather(*cancelled, return_exceptions=True)
        async with self._lock:
            targets = [m for m in self.models.values() if model_id in (None, m.id)]
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
        self.memory.settings = config.server
        return {"ok": True, "stale": self.stale(), "needs_daemon_restart": ignored}

    def stale(self) -> list[str]:
        """Running models whose profile in the config is no longer the one they run with."""
        models = self.config.models
        return [m.id for m in self.models.values() if m.server and models.get(m.id) != m.profile]

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
            self._spawn(self._start_first(first_model))

    async def _start_first(self, model_id: str) -> None:
        try:
            await self.switch(model_id)
        except UsageError as error:  # its GGUF is missing: the daemon serves the others
            log.warning("not starting %s: %s", model_id, error)

    # -- starts: the supervisor's own tasks ---------------------------------------
    def _attempt_for(self, profile: Profile, *, retry: bool) -> asyncio.Future[SwitchResult]:
        """The start that makes `profile` current: the one under way, or a new one (or an
        answer at once when it is ready, or failed recently and `retry` is off)."""
        running = self._attempts.get(profile.id)
        if running is not None and not running.done():
            return running
        model = self.models.get(profile.id)
        answer = None
        # Ready, and no change under way that might stop it: else it waits its turn.
        if model and model.state == State.READY and not model.yielding and not self._lock.locked():
            self.current = profile.id
            model.last_used = time.monotonic()
            answer = SwitchResult(ok=True, model=profile.id, noop=True)
        elif missing := missing_model_file(self.config, profile):
            raise missing  # before any eviction: nothing starts, no state changes
        elif model and not retry:
            failure = model.recent_start_failure(profile, self.config.server.retry_failed_after)
            if failure:
                answer = SwitchResult.failed(failure, noop=True)
        if answer is not None:
            done: asyncio.Future[SwitchResult] = asyncio.get_running_loop().create_future()
            done.set_result(answer)
            return done
        task = self._spawn(self._attempt(profile))
        self._attempts[profile.id] = task
        task.add_done_callback(
            lambda _: (
                self._attempts.pop(profile.id) if self._attempts.get(profile.id) is task else None
            )
        )
        return task

    async def _await(
        self, attempt: asyncio.Future[SwitchResult], model_id: str, timeout: float | None = None
    ) -> SwitchResult:
        """Wait for a start without ever cancelling it (TimeoutError after `timeout`)."""
        try:
            return await asyncio.wait_for(asyncio.shield(attempt), timeout)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if attempt.cancelled() and not (task and task.cancelling()):
                # The start itself was cancelled (POST /stop, shutdown), not our caller.
                return SwitchResult(ok=False, model=model_id, error="stopped while starting")
            raise

    async def _attempt(self, profile: Profile) -> SwitchResult:
        async with self._lock.turn(profile.priority):
            began = time.monotonic()
            result = await self._switch_locked(profile)
            if result.ok:  # before the lock goes to a start that might evict it
                self._handover.hand_over(self.models[profile.id])
        if not result.noop:
            duration_s = round(time.monotonic() - began, 3)
            self.events.publish("switch", **result.event(), duration_s=duration_s)
        return result

    async def _switch_locked(self, profile: Profile) -> SwitchResult:
        previous = self.current
        self.current = profile.id  # requests without a model now wait for this one
        model = self.models.get(profile.id)
        if model and model.state == State.READY:  # started while this attempt queued
            model.last_used = time.monotonic()
            return SwitchResult(ok=True, model=profile.id, noop=True)
        evicted, placed = await self._admit_locked(profile, may_evict=True)
        failure: Failure | None
        if isinstance(placed, str):  # refused before starting: its state does not change
            failure = self._model(profile).failure = self.last_error = Failure(
                profile.id, placed, [], kind="room", profile=profile
            )
        else:
            failure = await self._start_locked(profile, placed)
        if failure is None:
            return SwitchResult(ok=True, model=profile.id)
        restored = None
        for other in evicted:
            if missing_model_file(self.config, other):
                continue  # its file went while it ran: nothing to bring back
            _, room = await self._admit_locked(other, may_evict=False)
            if not isinstance(room, str) and await self._start_locked(other, room) is None:
                restored = restored or other.id
        self.last_error = failure  # the switch's own failure is the news, not the restore
        back = restored or previous
        if back and self.state_of(back) == State.READY:
            self.current = back
        return SwitchResult.failed(failure, restored=restored)

    # -- internals (hold the lock) -----------------------------------------------
    async def _admit_locked(
        self, profile: Profile, *, may_evict: bool
    ) -> tuple[list[Profile], Placement | str]:
        """The one admission path (daemon/scheduler.py decides): evict what the scheduler
        names, or wait for the models it needs the room of to finish their requests
        (up to queue_timeout), until `profile` fits. Returns what was evicted, and where
        `profile` goes or why it cannot start."""
        try:
            return await self._make_room_locked(profile, may_evict)
        finally:
            for model in self.models.values():
                model.yielding = False

    async def _make_room_locked(
        self, profile: Profile, may_evict: bool
    ) -> tuple[list[Profile], Placement | str]:
        evicted: list[Profile] = []
        began = time.monotonic()
        deadline = began + self.config.server.queue_timeout
        while True:
            running = [m for m in self.models.values() if m.server and m.id != profile.id]
            room = await scheduler.admit(profile, running, self.memory, self.config.server)
            if room.placed is not None and not room.evict:
                return evicted, room.placed
            blocking = [self.models[r.id] for r in room.evict or room.wait_for]
            names = ", ".join(m.id for m in blocking)
            if room.refused or not may_evict:
                return evicted, room.refused or f"no room for {profile.id} without stopping {names}"
            for model in blocking if room.evict else []:
                await self._evict_locked(model, reason="room", for_model=profile.id)
                evicted.append(model.profile)
            if room.wait_for:
                self.events.publish("room_wait", model=profile.id, serving=names)
                # Requests for the busy models are served first (no swap back and forth),
                # for max_swap_wait; then new ones wait too, so that they drain.
                swap_next = began + self.config.server.max_swap_wait
                if not await any_drains(blocking, min(deadline, swap_next)):
                    for model in blocking:
                        model.yielding = True
            if room.wait_for and not await any_drains(blocking, deadline):
                return evicted, f"no room for {profile.id}: {names} still serving requests"

    def _model(self, profile: Profile) -> Model:
        model = self.models.get(profile.id)
        if model is None:
            model = self.models[profile.id] = Model(profile)
        return model

    async def _start_locked(self, profile: Profile, placement: Placement) -> Failure | None:
        model = self._model(profile)
        model.profile, model.failure, model.placement = profile, None, placement
        self._enter(model, State.STARTING)
        server: Server | None = None
        try:
            # Workers first: llama-server would otherwise die in its RPC handshake, and
            # say less clearly which worker was missing.
            model.workers = await rpc.check_all(profile.rpc)
            if reason := rpc.unreachable_reason(model.workers):
                return self._fail(model, reason, [])
            launcher = self._runtime_for(profile)
            port = free_port()
            try:
                launched = self.kv.launched(placement.launched(profile), self.config.server)
                server = model.server = await launcher.start(
                    launched, port=port, run_dir=self.run_dir
                )
            except OSError as error:
                program = launcher.command(profile, port)[0]
                return self._fail(model, f"cannot start {program}: {error}", [])
            loading = server.loading
            await server.wait_ready(
                self.config.server.start_timeout,
                progress=lambda elapsed: self.events.publish(
                    "loading",
                    model=profile.id,
                    elapsed_s=round(elapsed, 1),
                    progress=loading.fraction,
                    stage=loading.stage,
                ),
            )
            await self.kv.restore(profile, server, self.config.server)
        except asyncio.CancelledError:
            # Stopped while starting (POST /stop, shutdown): leave nothing running.
            if server is not None:
                self._enter(model, State.STOPPING)
                await self._stop_server(server)
                model.server = None
                self._enter(model, State.STOPPED)
            else:
                self._fail(model, "stopped while starting", [])
            raise
        except Exception as error:
            if not isinstance(error, RuntimeError):  # wait_ready's own are expected
                log.exception("starting %s failed", profile.id)
            tail = server.log_tail(TAIL_ON_ERROR) if server else []
            if server is not None:
                await self._stop_server(server)
                model.server = None
            reason = str(error) if isinstance(error, RuntimeError) else repr(error)
            return self._fail(model, reason, tail)
        self._enter(model, State.READY, pid=server.pid)
        model.last_used = model.loaded_at = time.monotonic()
        log_text = "\n".join(server.log_tail(500))
        model.placement = self.memory.measure(profile, placement, log_text, server.pid)
        model.drained.set()
        model.watcher = self._spawn(self._watch(model, server))
        return None

    async def _stop_locked(self, model: Model) -> None:
        if model.watcher:
            model.watcher.cancel()
            model.watcher = None
        if model.server:
            if model.state != State.STOPPING:  # else a stop that was interrupted
                self._enter(model, State.STOPPING)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.server.drain_timeout):
                    await model.drained.wait()  # let in-flight requests finish
            await self.kv.save(model.profile, model.server, self.config.server)
            await self._stop_server(model.server)
            model.server = None
        if model.state != State.STOPPED:
            self._enter(model, State.STOPPED)

    async def _evict_locked(self, model: Model, *, reason: str, **details: object) -> None:
        """Stop a model to make room or because it idled past its TTL; it is forgotten."""
        self.events.publish("unload", model=model.id, reason=reason, **details)
        await self._stop_locked(model)
        del self.models[model.id]

    async def _stop_server(self, server: Server, grace: float | None = None) -> None:
        """Stop a server; an error in doing so is logged, never raised into a switch."""
        try:
            await server.stop(self.config.server.stop_timeout if grace is None else grace)
        except Exception:
            log.exception("stopping llama-server (pid %s) failed", server.pid)

    def _fail(
        self, model: Model, reason: str, tail: list[str], *, kind: FailureKind = "start"
    ) -> Failure:
        """Record why `model` failed (to start, or by crashing) and enter `failed`."""
        profile = model.profile
        model.failure = Failure(
            profile.id,
            reason,
            tail,
            kind=kind,
            profile=profile,
            file_stamp=file_stamp(profile.file),
        )
        self._enter(model, State.FAILED, reason=reason)
        self.last_error = model.failure
        return model.failure

    # -- background work ---------------------------------------------------------
    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _watch(self, model: Model, server: Server) -> None:
        """Notice a ready server dying on its own; record it and restart per policy."""
        code = await server.wait()
        async with self._lock:
            if model.server is not server:
                return  # stopped on purpose meanwhile
            await self._stop_server(server, 0)  # reap its process group and its record
            model.server, model.watcher = None, None
            reason = f"llama-server exited unexpectedly with code {code}"
            self.events.publish("crash", model=model.id, code=code)
            crash = self._fail(model, reason, server.log_tail(TAIL_ON_ERROR), kind="crash")
            if model.count_crash():
                self._spawn(self._restart_later(model, crash))

    async def _restart_later(self, model: Model, failure: Failure) -> None:
        """Start a crashed model again after a backoff (1 s, 2 s, 4 s ... 30 s), through
        the admission path and without evicting: if another model took its place, it is
        no longer wanted."""
        while True:
            await asyncio.sleep(min(MAX_BACKOFF, 2.0 ** (len(model.crashes) - 1)))
            async with self._lock:
                if self.models.get(model.id) is not model or model.failure is not failure:
                    return  # someone switched, stopped or restarted it meanwhile
                profile = self.config.models.get(model.id)
                room: Placement | str = "its profile was removed"
                if profile is not None and (missing := missing_model_file(self.config, profile)):
                    room = str(missing)
                elif profile is not None:
                    _, room = await self._admit_locked(profile, may_evict=False)
                if profile is None or isinstance(room, str):
                    self.events.publish("restart_skipped", model=model.id, reason=room)
                    return
                self.events.publish("restart", model=model.id, attempt=len(model.crashes))
                failed = await self._start_locked(profile, room)
                if failed is None:
                    return
                failure = failed
                if not model.count_crash():
                    return

    async def _expire_idle_forever(self) -> None:
        while True:
            await asyncio.sleep(TTL_CHECK_INTERVAL)
            for model in list(self.models.values()):
                await self.expire(model)

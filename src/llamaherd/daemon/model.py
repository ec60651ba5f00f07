"""One model the supervisor manages: its state, the transitions allowed between states,
its server and its traffic.

    stopped ──► starting ──► ready ──► stopping ──► stopped
                   │           │
                   └─► failed ◄┘ (a start that did not come up; a crash)
    failed ──► starting (a retry, a crash restart) | stopped (removed)
    starting ──► stopping (the daemon shuts down, or a stop cancels the start)

Only `Model.enter` changes a state. A transition outside the table is a bug: it raises
when `HERD_STRICT_STATES=1` (the tests set it) and is logged as an error otherwise, so a
daemon in production keeps serving.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from llamaherd.config import Profile
from llamaherd.daemon.memory import Placement
from llamaherd.runtime import Server, rpc

log = logging.getLogger(__name__)

CRASH_WINDOW = 3600.0  # crashes older than this no longer count against max_restarts


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.READY, State.FAILED, State.STOPPING}),
    State.READY: frozenset({State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.FAILED: frozenset({State.STARTING, State.STOPPED}),
}


class InvalidTransition(RuntimeError):
    pass


def strict_states() -> bool:
    return os.environ.get("HERD_STRICT_STATES") == "1"


FailureKind = Literal["start", "crash", "room"]


@dataclass
class Failure:
    model: str
    reason: str
    log_tail: list[str]
    kind: FailureKind = "start"
    at: float = field(default_factory=time.time)
    profile: Profile | None = None  # what failed, so a changed profile is tried afresh
    file_stamp: tuple[int, int] | None = None  # the GGUF's (mtime_ns, size) at the time

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "reason": self.reason,
            "kind": self.kind,
            "log_tail": self.log_tail,
            "at": self.at,
        }


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a model file, None when it is missing: a change means retry."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


# -- what a request or a switch gets ------------------------------------------------
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
    noop: bool = False  # nothing was started: already ready, or a recent failure repeated

    def event(self) -> dict[str, Any]:
        """The fields of the `switch` event."""
        return {"model": self.model, "ok": self.ok, "error": self.error, "restored": self.restored}

    @classmethod
    def failed(cls, failure: Failure, **details: Any) -> SwitchResult:
        return cls(False, failure.model, failure.reason, log_tail=failure.log_tail, **details)


@dataclass
class Model:
    """One model the supervisor has started: its state, server and traffic."""

    profile: Profile
    state: State = State.STOPPED
    server: Server | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None
    crashes: list[float] = field(default_factory=list)
    failure: Failure | None = None
    workers: list[rpc.WorkerCheck] = field(default_factory=list)  # checked at each start
    placement: Placement | None = None  # where the scheduler put it, what it holds there
    loaded_at: float = field(default_factory=time.monotonic)  # when it last became ready
    yielding: bool = False  # new requests wait: a swap waits for this model to drain
    # The last request's keep_alive/ttl in seconds (inf: never unloaded); None: the profile's.
    keep_alive: float | None = None

    @property
    def ttl(self) -> float | None:
        """Idle seconds before it is unloaded (None or inf: never)."""
        return self.profile.ttl if self.keep_alive is None else self.keep_alive

    @property
    def id(self) -> str:
        return self.profile.id

    def enter(self, state: State) -> State:
        """Move to `state`, checked against TRANSITIONS; returns the state left."""
        previous = self.state
        if state not in TRANSITIONS[previous]:
            message = f"{self.id}: transition {previous} -> {state} is not in the table"
            if strict_states():
                raise InvalidTransition(message)
            log.error(message)
        self.state = state
        return previous

    def hold(self) -> None:
        """A request is being served by it (a stop waits for it, up to drain_timeout)."""
        self.in_flight += 1
        self.drained.clear()
        self.last_used = time.monotonic()

    def release(self) -> None:
        self.in_flight -= 1
        self.last_used = time.monotonic()
        if self.in_flight == 0:
            self.drained.set()

    def count_crash(self) -> bool:
        """Count a crash; whether the profile's restart policy allows another start."""
        now = time.time()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        profile = self.profile
        return profile.restart == "on-failure" and len(self.crashes) <= profile.max_restarts

    def recent_start_failure(self, profile: Profile, retry_after: float) -> Failure | None:
        """The failure to answer with instead of starting `profile` again: a start that
        failed less than `retry_after` seconds ago with the same profile and file."""
        failure = self.failure
        if (
            self.state != State.FAILED
            or failure is None
            or failure.kind != "start"
            or failure.profile != profile
            or failure.file_stamp != file_stamp(profile.file)
            or time.time() - failure.at >= retry_after
        ):
            return None
        return failure

    def log_page(self, tail: int, since: int | None = None) -> dict:
        """Its log's last `tail` lines (after line `since`); its last failure's if it is
        not running (then `total` is None)."""
        if self.server:
            lines = self.server.log_tail(tail, since)
            return {"model": self.id, "lines": lines, "total": self.server.line_count}
        lines = self.failure.log_tail[-tail:] if self.failure and tail > 0 else []
        return {"model": self.id, "lines": lines, "total": None}

    @staticmethod
    def stopped_summary(model_id: str | None) -> dict:
        """The top of /status when the current model is not running (or none was set)."""
        stopped = {"state": str(State.STOPPED), "pid": None, "port": None, "url": None}
        return {"model": model_id, **stopped, "uptime_s": None}

    def summary(self) -> dict:
        server, placement = self.server, self.placement
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
            "progress": server.loading.fraction if server else None,
            "stage": server.loading.stage if server else None,
            "runtime": self.profile.runtime,
            "rpc": [w.as_json() for w in self.workers],
            "gpus": list(placement.gpus) if placement and placement.gpus is not None else None,
            "memory": dict(placement.footprint) if placement else None,
            "memory_measured": placement.measured if placement else False,
        }


@dataclass
class Ticket:
    """A request waiting for a start; the start hands it the model, already held."""

    model: Model | None = None


class Handover:
    """Requests waiting for starts, by model id. A start that succeeded hands its model to
    them, held, before its lock goes to another start that might evict it: else two models
    alternating under max_loaded 1 evict each other before any waiter is served."""

    def __init__(self) -> None:
        self._waiting: collections.defaultdict[str, list[Ticket]] = collections.defaultdict(list)

    @contextlib.contextmanager
    def ticket(self, model_id: str) -> Iterator[Ticket]:
        ticket = Ticket()
        self._waiting[model_id].append(ticket)
        try:
            yield ticket
        except BaseException:
            if ticket.model is not None:
                ticket.model.release()  # held for this request, which leaves
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiting[model_id].remove(ticket)  # not handed over

    def hand_over(self, model: Model) -> None:
        for ticket in self._waiting.pop(model.id, []):
            ticket.model = model
            model.hold()


async def any_drains(models: list[Model], deadline: float) -> bool:
    """Wait until one of `models` has no request in flight; False at the deadline."""
    waits = [asyncio.ensure_future(m.drained.wait()) for m in models]
    try:
        done, _ = await asyncio.wait(
            waits, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED"
        )
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)

"""Gateway requests' side of the supervisor: `serving(id)` holds a ready model for a
request, or queues the request (per model: `queued`) behind the start it needs, bounded
by queue_size and queue_timeout. A model that yields its room to a waiting swap
(max_swap_wait passed, daemon/supervisor.py) is not handed to new requests: they queue
for it, so it drains and the swap goes ahead.

Each request may say how long its model stays loaded afterwards (`keep_alive`, daemon/
lifetime.py): kept on the model until the next request, and `scheduler.expired` unloads
by it, at once when it is 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any

from llamaherd.config import Config, Profile
from llamaherd.daemon import scheduler
from llamaherd.daemon.model import Busy, Handover, Model, State, SwitchResult, Unavailable
from llamaherd.daemon.turns import Turns
from llamaherd.errors import UsageError


class ServesRequests:
    """Mixed into Supervisor, which provides the starts (`_attempt_for`, `_await`)."""

    config: Config
    models: dict[str, Model]
    current: str | None
    queued: collections.Counter[str]
    _handover: Handover
    _lock: Turns

    if TYPE_CHECKING:  # the starts and stops, which the supervisor owns

        def _attempt_for(
            self, profile: Profile, *, retry: bool
        ) -> asyncio.Future[SwitchResult]: ...

        async def _await(
            self, attempt: asyncio.Future[SwitchResult], model_id: str, timeout: float | None = None
        ) -> SwitchResult: ...

        async def _evict_locked(self, model: Model, *, reason: str, **details: object) -> None: ...

        def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    @contextlib.asynccontextmanager
    async def serving(
        self, model_id: str | None, keep_alive: float | None = None
    ) -> AsyncIterator[Model]:
        """A ready model for `model_id` (None: the current one), held as in flight, to
        stay loaded `keep_alive` seconds after this request (None: its profile's ttl).

        Starts it first when needed. Raises Busy when the queue is full or the wait too
        long, Unavailable when no model can serve, ConfigError when its GGUF is missing.
        """
        model = self._ready(model_id)
        if model is not None:
            model.hold()
        else:
            model = await self._wait_for(model_id)  # held already
        model.keep_alive = keep_alive
        try:
            yield model
        finally:
            model.release()
            if scheduler.expired(model):  # keep_alive 0: now, not at the next TTL check
                self._spawn(self.expire(model))

    async def expire(self, model: Model) -> None:
        """Unload `model` when it outlived its ttl; checked again under the lock, as a
        request may have come in meanwhile."""
        if scheduler.expired(model):
            async with self._lock:
                if self.models.get(model.id) is model and scheduler.expired(model):
                    await self._evict_locked(model, reason="ttl", ttl=model.ttl)

    @property
    def waiting(self) -> int:
        return self.queued.total()

    def _ready(self, model_id: str | None) -> Model | None:
        """The ready model for `model_id`; not one yielding its room to a waiting swap."""
        model = self.models.get(model_id or self.current or "")
        return model if model and model.state == State.READY and not model.yielding else None

    async def _wait_for(self, model_id: str | None) -> Model:
        settings = self.config.server
        if self.waiting >= settings.queue_size:
            raise Busy(f"{self.waiting} requests already wait for a model switch")
        deadline = time.monotonic() + settings.queue_timeout
        counted = model_id or self.current or self.config.default_model or ""
        self.queued[counted] += 1
        try:
            while (model := self._ready(model_id)) is None:
                target = model_id or self.current or self.config.default_model or ""
                if not target:
                    raise Unavailable("no model is running; name a profile in `model`")
                try:
                    profile = self.config.resolve(target)
                except UsageError as error:  # e.g. removed by a reload meanwhile
                    raise Unavailable(str(error)) from None
                if held := await self._wait_for_start(profile, deadline):
                    return held
            model.hold()
            return model
        except TimeoutError:
            raise Busy(f"waited {settings.queue_timeout:g}s for a model switch") from None
        finally:
            self.queued[counted] -= 1

    async def _wait_for_start(self, profile: Profile, deadline: float) -> Model | None:
        """Wait for the start of `profile`; the model, held for this request, when the
        start handed it over (before any other start could evict it), else None."""
        attempt = self._attempt_for(profile, retry=False)
        with self._handover.ticket(profile.id) as ticket:
            result = await self._await(attempt, profile.id, deadline - time.monotonic())
        if not result.ok:
            raise Unavailable(f"{result.model} failed to start: {result.error}")
        # Held since the start ended, so a stop that began since waits for this request.
        return ticket.model

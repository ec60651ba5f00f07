"""What happens in the daemon, as a stream: state changes, switches, crashes, load progress.

The supervisor publishes; each `GET /events` client subscribes with its own bounded
queue. A client too slow to keep up loses its oldest events rather than slowing the
daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

QUEUE_SIZE = 1000

log = logging.getLogger(__name__)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict]] = set()
        self._listeners: list[Callable[[dict], None]] = []

    def listen(self, callback: Callable[[dict], None]) -> None:
        """Call `callback` with every event, synchronously (metrics count them this way)."""
        self._listeners.append(callback)

    def publish(self, kind: str, **fields: object) -> None:
        event = {"type": kind, "at": time.time(), **fields}
        for callback in self._listeners:
            # Events are published inside state changes: a failing listener must not
            # break the change, the other listeners or the subscribers.
            try:
                callback(event)
            except Exception:
                name = getattr(callback, "__qualname__", repr(callback))
                log.exception("event listener %s failed on a %s event", name, kind)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # drop the oldest for this slow client
            queue.put_nowait(event)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict]]:
        queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


async def sse(
    next_event: Callable[[], Awaitable[dict]], heartbeat: float = 15.0
) -> AsyncIterator[bytes]:
    """Server-sent events: `event: <type>` + JSON data; a comment line keeps proxies awake.

    `next_event` is awaited afresh each time (e.g. `queue.get`), so a heartbeat timeout
    cancels only that wait, never the stream.
    """
    while True:
        try:
            event = await asyncio.wait_for(next_event(), heartbeat)
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

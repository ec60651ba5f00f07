"""Whose turn it is to change what runs: the supervisor's lock, taken in priority order.

Starts, stops and restarts all happen under one lock (nobody sees a half-switched
server). When several starts wait for it, the one for the profile with the highest
`priority` goes first; equal priorities go in the order they asked (asyncio.Lock's own
order). Everything else (stops, crash handling, TTL) takes its turn at priority 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator


class Turns:
    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def locked(self) -> bool:
        return self._held

    @contextlib.asynccontextmanager
    async def turn(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold the lock; among those waiting, a higher `priority` gets it first."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def __aenter__(self) -> None:
        await self._acquire(0)

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    async def _acquire(self, priority: int) -> None:
        if not self._held and not self._waiting:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (-priority, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as the waiter left: pass it on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not waiter]
                heapq.heapify(self._waiting)
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)  # the lock passes to it, still held
                return
        self._held = False

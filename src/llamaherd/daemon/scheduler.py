"""The scheduler's decisions: may a model start beside the running ones, which one to
evict for it, and when an idle model has outlived its TTL. Decisions only; the
supervisor acts on them under its lock (its one admission path)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from llamaherd.config import Profile
from llamaherd.daemon.model import Model, State
from llamaherd.gguf.budget import MemoryCheck


@dataclass
class Admission:
    """`fits`; or evict `victim` and ask again; or `refused` with the reason."""

    fits: bool = False
    victim: Model | None = None
    refused: str | None = None


async def admit(
    profile: Profile,
    running: list[Model],
    *,
    max_loaded: int,
    memory: MemoryCheck,
    may_evict: bool,
) -> Admission:
    """May `profile` start beside `running`? Beside means: fewer than max_loaded run, and
    (where the GPUs' sizes are known and the profile pins its placement) the planner's
    estimate fits. If not, with `may_evict`, the idle non-persistent model used least
    recently is the victim (one with requests in flight only when no idle one is left)."""
    conflict = None
    if len(running) < max_loaded:
        others = [m.profile for m in running]
        conflict = await asyncio.to_thread(memory.conflict, profile, others)
        if conflict is None:
            return Admission(fits=True)
    why = conflict or f"max_loaded = {max_loaded}"
    names = ", ".join(m.id for m in running)
    if not may_evict:
        return Admission(refused=f"no room: {why} ({names} running)")
    candidates = [m for m in running if not m.profile.persistent]
    if not candidates:
        return Admission(refused=f"no room: {why} and the running models are persistent ({names})")
    return Admission(victim=min(candidates, key=lambda m: (m.in_flight > 0, m.last_used)))


def expired(model: Model) -> bool:
    """Ready, idle, and unused for longer than its profile's `ttl`."""
    ttl = model.profile.ttl
    return bool(
        ttl
        and model.state == State.READY
        and model.in_flight == 0
        and time.monotonic() - model.last_used > ttl
    )

"""The scheduler's decisions: may a model start beside the running ones, which ones to
evict for it, and when an idle model has outlived its TTL. Decisions only, on plain
figures (benchmarks/scheduler_sim.py replays traces through the same `make_room`); the
supervisor acts on them under its lock (its one admission path).

The policy (docs/scheduling.md):
- a model is admitted when it fits in what the devices have free beside the resident
  models (and fewer than `max_loaded` run, when that is a number);
- otherwise the idle, non-persistent residents make room: the set that frees the fewest
  bytes and still makes room, the least recently used on a tie; models loaded less than
  `min_resident` seconds ago only when nothing else can;
- a model serving requests is never stopped to make room: the start waits for it to
  drain;
- when nothing can make room, the answer names what is resident and what the new model
  needs.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import ValidationError

from llamaherd.config import Config, Profile, ServerSettings
from llamaherd.daemon.memory import Memory, Placement, describe
from llamaherd.daemon.model import Model, State
from llamaherd.errors import UsageError
from llamaherd.schema import AdmissionQuery

Bytes = dict[str, int]
Placed = TypeVar("Placed")

MAX_CANDIDATES = 10  # subsets of at most 2**10 residents are tried; beyond, LRU order


@dataclass(frozen=True)
class Resident:
    """A running model as the scheduler sees it."""

    id: str
    footprint: Bytes
    last_used: float  # time.monotonic()
    loaded_at: float
    busy: bool = False  # requests in flight
    persistent: bool = False


@dataclass
class Room(Generic[Placed]):
    """Start at `placed` after evicting `evict`; or wait for `wait_for` to drain and ask
    again; or `refused`, with the reason."""

    placed: Placed | None = None
    evict: list[Resident] = field(default_factory=list)
    wait_for: list[Resident] = field(default_factory=list)
    refused: str | None = None


def make_room(
    place: Callable[[Bytes], Placed | None],
    capacity: Bytes,
    residents: Sequence[Resident],
    *,
    max_loaded: int | None = None,
    min_resident: float = 0.0,
    now: float | None = None,
) -> Room[Placed]:
    """What it takes to start a model that `place(free)` puts somewhere (None: no room)
    beside `residents` on devices of `capacity` bytes."""
    now = time.monotonic() if now is None else now

    def attempt(gone: tuple[Resident, ...]) -> Placed | None:
        if max_loaded is not None and len(residents) - len(gone) >= max_loaded:
            return None
        return place(free_after(capacity, residents, gone))

    beside = place(free_after(capacity, residents))
    if beside is not None and (max_loaded is None or len(residents) < max_loaded):
        return Room(placed=beside)
    # Short of a slot only (max_loaded), not of memory: bytes do not matter, age does.
    by_bytes = beside is None
    evictable = [r for r in residents if not r.persistent]
    idle = [r for r in evictable if not r.busy]
    settled = [r for r in idle if now - r.loaded_at >= min_resident]
    for pool in (settled, idle):
        found = _smallest(pool, attempt, by_bytes)
        if found is not None:
            return Room(placed=found[1], evict=list(found[0]))
    found = _smallest(evictable, attempt, by_bytes)
    if found is not None:
        return Room(wait_for=[r for r in found[0] if r.busy])
    return Room(refused="no room")


def free_after(
    capacity: Bytes, residents: Sequence[Resident], gone: Sequence[Resident] = ()
) -> Bytes:
    """What each device has left once `gone` stopped."""
    free = dict(capacity)
    for resident in residents:
        if resident not in gone:
            for device, n in resident.footprint.items():
                free[device] = free.get(device, 0) - n
    return free


def _smallest(
    pool: list[Resident],
    attempt: Callable[[tuple[Resident, ...]], Placed | None],
    by_bytes: bool,
) -> tuple[tuple[Resident, ...], Placed] | None:
    """The subset of `pool` freeing the fewest bytes (or, `by_bytes` off, the fewest
    models), the least recently used on a tie, after which the model fits; with where."""
    pool = sorted(pool, key=lambda r: r.last_used)[:MAX_CANDIDATES]
    subsets = [
        subset for size in range(1, len(pool) + 1) for subset in itertools.combinations(pool, size)
    ]

    def cost(subset: tuple[Resident, ...]) -> tuple[int, float]:
        size = sum(sum(r.footprint.values()) for r in subset) if by_bytes else len(subset)
        return size, max(r.last_used for r in subset)

    subsets.sort(key=cost)
    for subset in subsets:
        placed = attempt(subset)
        if placed is not None:
            return subset, placed
    return None


async def admit(
    profile: Profile, running: list[Model], memory: Memory, settings: ServerSettings
) -> Room[Placement]:
    """make_room for `profile` beside the `running` models, on this machine's devices;
    a refusal says what is resident, what each holds and what `profile` needs."""
    residents = [resident(m) for m in running]
    cap = settings.max_loaded

    def decide() -> Room[Placement]:
        capacity = memory.capacity()
        room = make_room(
            lambda free: memory.place(profile, free, capacity),
            capacity,
            residents,
            max_loaded=None if cap == "auto" else cap,
            min_resident=settings.min_resident,
        )
        if room.refused:
            room.refused = _no_room(profile, memory, capacity, running, cap)
        return room

    return await asyncio.to_thread(decide)


def profile_for(config: Config, query: AdmissionQuery) -> Profile:
    """The profile POST /admission asks about: a configured one, or a GGUF file with
    the settings given (checked like a herd.toml profile)."""
    if query.model:
        return config.resolve(query.model)
    if not query.file:
        raise UsageError('name a profile in "model" or a GGUF path in "file"')
    fields = query.model_dump(exclude={"model"}, exclude_none=True)
    try:
        return Profile.model_validate({"id": "plan", **fields, "file": Path(query.file)})
    except ValidationError as error:
        raise UsageError(f"not a valid profile: {error.errors()[0]['msg']}") from None


def _no_room(
    profile: Profile, memory: Memory, capacity: Bytes, running: list[Model], cap: int | str
) -> str:
    held = []
    for model in running:
        notes = [describe(model.placement.footprint if model.placement else {})]
        if model.profile.persistent:
            notes.append("persistent")
        if model.in_flight:
            notes.append(f"serving {model.in_flight}")
        held.append(f"{model.id} ({', '.join(notes)})")
    need = describe(memory.alone(profile).footprint)
    limit = f"max_loaded = {cap}; " if cap != "auto" else ""
    free = describe(free_after(capacity, [resident(m) for m in running]))
    return (
        f"no room for {profile.id}: {limit}it needs {need}; running: "
        f"{'; '.join(held) or 'nothing'}; free: {free}"
    )


def resident(model: Model) -> Resident:
    return Resident(
        id=model.id,
        footprint=model.placement.footprint if model.placement else {},
        last_used=model.last_used,
        loaded_at=model.loaded_at,
        busy=model.in_flight > 0,
        persistent=model.profile.persistent,
    )


def expired(model: Model) -> bool:
    """Ready, idle, and unused for its `ttl` (the profile's, or the last request's
    keep_alive: 0 expires the moment its request ends)."""
    ttl = model.ttl
    return (
        ttl is not None
        and ttl != math.inf
        and model.state == State.READY
        and model.in_flight == 0
        and time.monotonic() - model.last_used >= ttl
    )

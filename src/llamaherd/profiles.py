"""One description of a profile: the row `herd models`, `GET /models` and the model
picker show (schema.ModelRow; docs/api.md documents its fields)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from llamaherd.schema import MemoryEstimate, ModelRow
from llamaherd.store import latest_speeds

if TYPE_CHECKING:
    from llamaherd.config import Profile

IDLE = ("stopped", "failed")  # no server holds the file: a missing one is the news


def describe(
    profile: Profile,
    *,
    state: str = "stopped",
    speed_tps: float | None = None,
    memory: MemoryEstimate | dict[str, Any] | None = None,
    active: bool = False,
) -> ModelRow:
    """The profile's row: its herd.toml fields, its state, the latest measured speed and
    the planner's memory estimate (gguf/budget.py; None when not estimated), plus the
    original setup's fields (docs/api.md). A state that is not a model state is a bug,
    and raises.

    A profile that runs on no server and whose GGUF is not on disk is `missing`: a
    property of the profile, not a supervisor state (nothing runs, nothing changes
    when the file appears), read from the disk at each listing so no watcher is needed."""
    if state in IDLE and not profile.file.exists():
        state = "missing"
    return ModelRow.model_validate(
        {
            "id": profile.id,
            "name": profile.name,
            "aliases": profile.aliases,
            "ctx": profile.ctx,
            "best_for": profile.best_for,
            "file": str(profile.file),
            "persistent": profile.persistent,
            "ttl": profile.ttl,
            "state": state,
            "speed_tps": speed_tps,
            "memory": memory,
            "speed": speed_text(profile, speed_tps),
            "ctx_size": str(profile.ctx) if profile.ctx else "",
            "is_bench": profile.id.startswith("bench-"),
            "active": active,
        }
    )


def speed_text(profile: Profile, speed_tps: float | None) -> str:
    """The original setup's `speed`: "~147 t/s" measured, else the profile's declared
    `speed_hint` (what models.conf called SPEED), else ""."""
    if speed_tps is not None:
        return f"~{speed_tps:.0f} t/s"
    return profile.speed_hint or ""


def describe_all(
    profiles: Iterable[Profile],
    *,
    states: Mapping[str, str] | None = None,
    memory: Mapping[str, MemoryEstimate | dict[str, Any] | None] | None = None,
    current: str | None = None,
) -> list[ModelRow]:
    """Every profile's row, with the speeds from the benchmark store in the state dir;
    `current` is the daemon's current model (its row is `active`)."""
    speeds = latest_speeds()  # {} until something is measured
    states = states or {}
    memory = memory or {}
    return [
        describe(
            p,
            state=states.get(p.id, "stopped"),
            speed_tps=speeds.get(p.id),
            memory=memory.get(p.id),
            active=p.id == current,
        )
        for p in profiles
    ]

"""One description of a profile: the row `herd models`, `GET /models` and the model
picker show (schema.ModelRow; docs/api.md documents its fields).

A row is built in two steps: the profile's own fields (`profile_fields`, from herd.toml
alone) and what changes while herd runs (`row`: the state, the measured speed, the
memory estimate). `herd models` keeps the first step's result in the state dir, keyed by
herd.toml's content (`listed_fields`), so listing an unchanged file validates nothing:
pydantic and the config's model classes are most of a command's start (issue 13).
This module imports no pydantic itself; `describe` loads the schema when it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaherd import __version__, paths
from llamaherd.fsutil import write_text_if_changed
from llamaherd.store import latest_speeds

if TYPE_CHECKING:
    from llamaherd.config import Config, Profile
    from llamaherd.schema import MemoryEstimate, ModelRow

IDLE = ("stopped", "failed")  # no server holds the file: a missing one is the news


def profile_fields(profile: Profile) -> dict[str, Any]:
    """What a row takes from herd.toml alone (plain JSON values)."""
    return {
        "id": profile.id,
        "name": profile.name,
        "aliases": profile.aliases,
        "ctx": profile.ctx,
        "best_for": profile.best_for,
        "file": str(profile.file),
        "persistent": profile.persistent,
        "ttl": profile.ttl,
        "speed_hint": profile.speed_hint,
    }


def row(
    fields: Mapping[str, Any],
    *,
    state: str = "stopped",
    speed_tps: float | None = None,
    memory: dict[str, Any] | None = None,
    active: bool = False,
) -> dict[str, Any]:
    """The row of a profile with `fields` (profile_fields), as ModelRow's JSON.

    A profile that runs on no server and whose GGUF is not on disk is `missing`: a
    property of the profile, not a supervisor state (nothing runs, nothing changes
    when the file appears), read from the disk at each listing so no watcher is needed."""
    if state in IDLE and not os.path.exists(fields["file"]):
        state = "missing"
    ctx = fields["ctx"]
    return {
        **{key: value for key, value in fields.items() if key != "speed_hint"},
        "state": state,
        "speed_tps": speed_tps,
        "memory": memory,
        "speed": speed_text(fields["speed_hint"], speed_tps),
        "ctx_size": str(ctx) if ctx else "",
        "is_bench": fields["id"].startswith("bench-"),
        "active": active,
    }


def speed_text(speed_hint: str | None, speed_tps: float | None) -> str:
    """The original setup's `speed`: "~147 t/s" measured, else the profile's declared
    `speed_hint` (what models.conf called SPEED), else ""."""
    if speed_tps is not None:
        return f"~{speed_tps:.0f} t/s"
    return speed_hint or ""


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
    and raises."""
    from llamaherd.schema import ModelRow

    fields = profile_fields(profile)
    return ModelRow.model_validate(
        row(fields, state=state, speed_tps=speed_tps, memory=_plain(memory), active=active)
    )


def describe_all(
    profiles: Iterable[Profile],
    *,
    states: Mapping[str, str] | None = None,
    memory: Mapping[str, MemoryEstimate | dict[str, Any] | None] | None = None,
    current: str | None = None,
) -> list[ModelRow]:
    """Every profile's row (see rows) as the API's ModelRow."""
    from llamaherd.schema import ModelRow

    plain = {pid: _plain(estimate) for pid, estimate in (memory or {}).items()}
    listed = rows(
        [profile_fields(p) for p in profiles], states=states, memory=plain, current=current
    )
    return [ModelRow.model_validate(r) for r in listed]


def rows(
    fields: Iterable[Mapping[str, Any]],
    *,
    states: Mapping[str, str] | None = None,
    memory: Mapping[str, dict[str, Any] | None] | None = None,
    current: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of profiles with these fields, with the speeds from the benchmark store
    in the state dir; `current` is the daemon's current model (its row is `active`)."""
    speeds = latest_speeds()  # {} until something is measured
    states = states or {}
    memory = memory or {}
    return [
        row(
            f,
            state=states.get(f["id"], "stopped"),
            speed_tps=speeds.get(f["id"]),
            memory=memory.get(f["id"]),
            active=f["id"] == current,
        )
        for f in fields
    ]


def _plain(memory: MemoryEstimate | dict[str, Any] | None) -> dict[str, Any] | None:
    if memory is None or isinstance(memory, dict):
        return memory
    return memory.model_dump(mode="json")


# --- The validated fields of a herd.toml, kept by its content -----------------------------

_CACHE_NAME = "profile-rows.json"
_CACHED_FILES = 8  # herd.toml files remembered (yours, the demo's, a project's ...)


def listed_fields(path: Path) -> list[dict[str, Any]] | None:
    """profile_fields of every profile in the herd.toml at `path`, as remembered when that
    exact text was last validated (remember_fields); None when it was not, so the caller
    loads the file and reports what is wrong with it as usual.

    The key is the file's bytes and everything else that shapes the result: herd's
    version and its config code (a new check must see old files again), and the home
    directory `~` expands to. A `file` that became a directory is an error the full load
    reports, so it is looked for here too."""
    try:
        entry = _read_cache().get(str(path))
        key = _key(path)
    except OSError:
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    fields: list[dict[str, Any]] = entry["profiles"]
    if any(os.path.isdir(f["file"]) for f in fields):
        return None
    return fields


def remember_fields(config: Config) -> list[dict[str, Any]]:
    """profile_fields of config's profiles, remembered for listed_fields; a state dir that
    cannot be written only costs the next listing its speed."""
    fields = [profile_fields(p) for p in config.models.values()]
    if config.path is None:
        return fields
    try:
        cache = _read_cache()
        cache.pop(str(config.path), None)
        cache[str(config.path)] = {"key": _key(config.path), "profiles": fields}
        kept = dict(list(cache.items())[-_CACHED_FILES:])
        write_text_if_changed(paths.state_dir() / _CACHE_NAME, json.dumps(kept))
    except OSError:
        pass
    return fields


def _key(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(os.path.expanduser("~").encode())
    digest.update(__version__.encode())
    config_code = Path(__file__).parent / "config"
    for source in sorted(config_code.glob("*.py")) + [Path(__file__)]:
        digest.update(str(source.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def _read_cache() -> dict[str, Any]:
    try:
        cache = json.loads((paths.state_dir() / _CACHE_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # damaged: rebuilt by the next full load
    return cache if isinstance(cache, dict) else {}

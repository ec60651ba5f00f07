"""GET /models: one row per profile (`herd models`, the picker)."""

from __future__ import annotations

from llamaherd.schema.common import Answer, ProfileState


# -- GET /models ---------------------------------------------------------------------
class MemoryEstimate(Answer):
    """The planner's estimate for a profile on this machine's GPUs (gguf/budget.py)."""

    gpu: int  # bytes on the GPUs, margin excluded
    cpu: int  # bytes in RAM
    fits: bool


class ModelRow(Answer):
    """One profile, as `herd models`, `GET /models` and the picker show it."""

    id: str
    name: str
    aliases: list[str]
    ctx: int | None
    best_for: str
    file: str
    persistent: bool
    ttl: float | None
    state: ProfileState = "stopped"
    speed_tps: float | None = None
    memory: MemoryEstimate | None = None
    # The original setup's fields (docs/api.md "Coming from the original setup").
    speed: str = ""  # "~147 t/s": measured, else the profile's speed_hint, else ""
    ctx_size: str = ""  # ctx as text; "" for llama-server's default
    is_bench: bool = False  # the id starts with "bench-"
    active: bool = False  # the daemon's current model


class ModelList(Answer):
    models: list[ModelRow]

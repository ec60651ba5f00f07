"""What every answer shares: the base class (unknown fields ignored, built on first use),
the error body, the model states."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ModelState = Literal["stopped", "starting", "ready", "stopping", "failed"]
# A profile row's state: a model state, or `missing` when its GGUF is not on disk.
ProfileState = ModelState | Literal["missing"]
# A reading as its source gave it: NVML counts are ints, watts floats; the fake-GPU file
# (HERD_FAKE_GPUS) may hold either, and JSON should show what the source said.
Reading = int | float | None


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class ErrorAnswer(Answer):
    """4xx/5xx bodies: `{"error": ...}`, with the model asked for when there was one and
    what to do about it (`hint`: "did you mean ...", the known ids)."""

    error: str
    model: str | None = None
    hint: str | None = None


class Health(Answer):
    status: Literal["ok"] = "ok"

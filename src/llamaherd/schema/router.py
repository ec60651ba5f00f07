"""The llama.cpp router's model API, as the gateway answers it (daemon/router_api.py):
`GET /models` and `/v1/models`, `POST /models/load|unload`, `GET /models/sse`. The shapes
are llama-server's own in router mode (tools/server/server-models.cpp), which its web UI
and Open WebUI read; herd adds `name` and `state` to each row."""

from __future__ import annotations

from typing import Literal

from llamaherd.schema.common import Answer, ProfileState

# The router's `status.value`s herd has a state for: a crashed or failed model is
# "unloaded" with `failed: true` and an `exit_code`, as the router says it.
RouterState = Literal["loaded", "loading", "unloaded"]


class LoadProgress(Answer):
    """How far a load is: the router's stages (herd loads one text model) and a 0..1 value."""

    stages: list[str] = ["text_model"]
    current: str = "text_model"
    value: float


class RouterStatus(Answer):
    value: RouterState
    args: list[str]  # the llama-server command line it runs (or would run) with
    preset: str  # the same as the router's INI preset section
    failed: bool | None = None
    exit_code: int | None = None
    error: str | None = None  # herd's: why it failed (the router has no reason)


class Architecture(Answer):
    input_modalities: list[str] = ["text"]
    output_modalities: list[str] = ["text"]


class RouterModel(Answer):
    id: str
    aliases: list[str]
    tags: list[str] = []
    object: Literal["model"] = "model"
    owned_by: str = "llamaherd"
    created: int
    status: RouterStatus
    architecture: Architecture = Architecture()
    source: Literal["preset"] = "preset"  # a herd.toml profile, as a router preset is
    can_remove: bool = False
    meta: dict | None = None  # the running llama-server's own (n_ctx, n_params ...)
    name: str  # herd's: the profile's name
    state: ProfileState  # herd's: the model's state (docs/architecture.md)


class RouterModelList(Answer):
    data: list[RouterModel]
    object: Literal["list"] = "list"


class RouterLoad(Answer):
    """POST /models/load and /models/unload's body."""

    model: str


class RouterDone(Answer):
    success: bool = True


class RouterEventData(Answer):
    status: RouterState
    progress: LoadProgress | None = None
    exit_code: int | None = None


class RouterEvent(Answer):
    """One `data:` record of GET /models/sse."""

    model: str
    event: Literal["model_status", "status_change", "models_reload"]
    data: RouterEventData | None = None

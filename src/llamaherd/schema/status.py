"""GET /status, and the answers of POST /switch, /stop, /reload, /shutdown and GET /logs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from llamaherd.schema.common import Answer, ErrorAnswer, ModelState


# -- GET /status ---------------------------------------------------------------------
class RpcWorker(Answer):
    endpoint: str
    reachable: bool
    error: str | None = None


class ModelStatus(Answer):
    """One started model (an entry of `loaded`). The current model's fields sit at the
    top of /status too; when it has never run, everything past `state` is null."""

    model: str | None
    state: ModelState
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    started_at: float | None = None
    uptime_s: float | None = None
    in_flight: int | None = None
    idle_s: float | None = None
    restarts: int | None = None
    argv: list[str] | None = None
    log_file: str | None = None
    log_lines: int | None = None
    progress: float | None = None
    """How far its model load got, 0 to 1, from llama-server's log; 1 once loaded."""
    stage: str | None = None
    """The load's stage: loading model, reading tensors, warming up, ..., ready."""
    runtime: Literal["native", "docker"] | None = None
    rpc: list[RpcWorker] = []
    gpus: list[int] | None = None
    """The GPUs the scheduler showed it (CUDA_VISIBLE_DEVICES); null: as its profile says."""
    memory: dict[str, int] | None = None
    """Bytes it holds per device ("GPU0", ..., "CPU"): measured, or the planner's estimate."""
    memory_measured: bool = False


class Device(Answer):
    """One device as the scheduler counts it (docs/scheduling.md)."""

    name: str
    capacity: int
    """Bytes models may use: the device's total less the margin."""
    margin: int
    used: dict[str, int]
    """Bytes each resident model holds on it."""
    free: int


class Failure(Answer):
    """The last failure (`last_error`)."""

    model: str
    reason: str
    kind: Literal["start", "crash", "room"]
    log_tail: list[str]
    at: float


class KvFile(Answer):
    """One saved prompt cache (docs/kv-keep.md)."""

    slot: int
    tokens: int
    bytes: int
    age_s: float


class KvRestore(Answer):
    """What a profile's last start restored (lazy: what requests restored since)."""

    at: float
    tokens: int
    files: int
    discarded: int
    """Files thrown away as no longer valid (model or flags changed, corrupt, refused)."""
    error: str | None = None
    seconds_saved: float = 0.0
    """The restored tokens at the prompt speed their server had when it saved them."""
    lazy: bool = False
    """kv_restore = "lazy": the start restored nothing; requests whose prompt matches do."""
    pending: int = 0
    """Lazy: saved files that no request has matched yet."""


class KvCache(Answer):
    saved: list[KvFile] = []
    last_restore: KvRestore | None = None


class HerdState(ModelStatus):
    """What the supervisor reports: the current model, every loaded one, the queue."""

    loaded: list[ModelStatus]
    stale: list[str]
    waiting: int
    queue: dict[str, int] = {}
    """Requests waiting, by the model they wait for."""
    last_error: Failure | None
    devices: list[Device] = []
    kv_cache: dict[str, KvCache] = {}
    """Per profile: its saved prompt caches and what its last start restored."""


class Daemon(Answer):
    pid: int
    version: str
    config: str | None
    url: str  # the gateway: where clients send requests
    api_url: str
    started_at: float
    uptime_s: float
    llama_server: str


class _DaemonFirst(Answer):
    # A base listed after HerdState puts `daemon` first in the JSON, as `herd status
    # --json` has always printed it (pydantic orders fields by reversed MRO).
    daemon: Daemon


class Status(HerdState, _DaemonFirst):
    """GET /status, with the original setup's `model_name` (the current model's display
    name) and `status` (a message: "" when fine, "loading", the failure reason, ...)."""

    model_name: str | None
    status: str


# -- POST /switch --------------------------------------------------------------------
class _OkFirst(Answer):
    ok: Literal[True] = True
    success: Literal[True] = True  # the original setup's name for `ok`


class SwitchDone(HerdState, _OkFirst):
    """200: the model is ready; the /status fields without `daemon`."""


class SwitchFailed(Answer):
    """200 too (as the original answered): it did not start; `restored` is the model
    running again (or null)."""

    ok: Literal[False] = False
    success: Literal[False] = False
    model: str
    error: str | None
    restored: str | None
    log_tail: list[str]
    status: HerdState


class SwitchReply(RootModel[SwitchDone | SwitchFailed]):
    """Either answer of POST /switch, told apart by `ok`."""

    root: Annotated[SwitchDone | SwitchFailed, Field(discriminator="ok")]


# -- POST /stop, /reload, /shutdown, GET /logs ---------------------------------------
class Stopped(Answer):
    stopped: list[str]


class Reloaded(Answer):
    """200: applied. (A refused file is a 400 ErrorAnswer with `ok: false`.)"""

    ok: Literal[True] = True
    stale: list[str]
    needs_daemon_restart: list[str]


class ReloadRefused(ErrorAnswer):
    ok: Literal[False] = False


class ShuttingDown(Answer):
    shutting_down: Literal[True] = True


class LogPage(Answer):
    """`total` counts lines since the llama-server started; null when it does not run
    (then `lines` is its last failure's log tail)."""

    model: str | None
    lines: list[str]
    total: int | None


# -- POST /admission -------------------------------------------------------------------
class AdmissionQuery(BaseModel):
    """POST /admission: a profile by id, or a GGUF file with the settings that change its
    memory (what `herd plan FILE --beside-running` sends)."""

    model: str | None = None
    file: str | None = None
    ctx: int | None = None
    parallel: int | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    flash_attn: Literal["on", "off", "auto"] | None = None


class Admission(Answer):
    """Could the model start beside the running ones now, and what would it take?"""

    model: str
    fits: bool
    """It starts without stopping anything."""
    need: dict[str, int]
    """Bytes per device where it would go (or, with no room, where it would go alone)."""
    gpus: list[int] | None
    evict: list[str]
    """Idle models the scheduler would stop to make room."""
    wait_for: list[str]
    """Models serving requests whose room it needs: the start would wait for them."""
    refused: str | None
    devices: list[Device]

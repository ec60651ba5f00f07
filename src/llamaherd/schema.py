"""The management API's answers as pydantic models: the one contract between the daemon
(daemon/api.py declares them as `response_model`, so /openapi.json shows them) and its
clients (client.py for the CLI and scripts, tui/remote.py for the dashboard), which
parse every answer into them. docs/api.md explains what each field means.

Unknown fields are ignored, so a client keeps working against a newer daemon that adds
some. This module imports pydantic only: the CLI loads it on every daemon command.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

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


class Failure(Answer):
    """The last failure (`last_error`)."""

    model: str
    reason: str
    kind: Literal["start", "crash", "room"]
    log_tail: list[str]
    at: float


class HerdState(ModelStatus):
    """What the supervisor reports: the current model, every loaded one, the queue."""

    loaded: list[ModelStatus]
    stale: list[str]
    waiting: int
    queue: dict[str, int] = {}
    """Requests waiting, by the model they wait for."""
    last_error: Failure | None
    devices: list[Device] = []


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


# -- GET /system ---------------------------------------------------------------------
class GpuProcess(Answer):
    pid: int
    used_memory: int | None  # bytes; null when the driver cannot tell
    profile: str | None = None  # the model whose llama-server this is


class Gpu(Answer):
    index: int
    name: str | None = None
    uuid: str | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    utilization: Reading = None
    memory_utilization: Reading = None
    temperature: Reading = None
    power_draw: Reading = None
    power_limit: Reading = None
    fan: Reading = None
    clock_sm: Reading = None
    clock_memory: Reading = None
    compute_cap: str | None = None
    processes: list[GpuProcess] = []


class Disk(Answer):
    path: str
    total: int
    used: int
    free: int
    percent: float


class Host(Answer):
    cpu_percent: float
    cpu_per_core: list[float]
    cpu_count: int | None
    memory_total: int
    memory_used: int
    memory_available: int
    memory_percent: float
    swap_total: int
    swap_used: int
    load_avg: list[float] | None
    disk: Disk | None


class ServerLive(Answer):
    """A ready llama-server's live numbers (monitor/server.py, plus its process)."""

    model: str
    state: ModelState
    pid: int
    url: str | None
    tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    slots_active: int | None
    slots_idle: int | None
    ctx_used: list[int]
    n_ctx: list[int | None]
    in_flight: int
    requests_deferred: int | None
    kv_cache_usage: float | None
    tokens_predicted_total: int | None
    prompt_tokens_total: int | None
    rss: int | None = None
    cpu_percent: float | None = None
    gpus: list[int] = []
    gpu_memory: int | None = None


class History(Answer):
    """Series aligned with `t`; null where a model or GPU had no value at that time."""

    interval_s: float
    t: list[float]
    tokens_per_s: dict[str, list[float | None]]  # by model
    gpu_memory_used: dict[str, list[Reading]]  # by GPU index (a string)
    gpu_utilization: dict[str, list[Reading]]
    cpu_percent: list[float]


class SystemSnapshot(Answer):
    """GET /system."""

    gpus: list[Gpu]
    gpu_note: str | None
    system: Host | None  # null before the first sample
    servers: list[ServerLive]
    history: History
    sampled_at: float | None
    error: str | None

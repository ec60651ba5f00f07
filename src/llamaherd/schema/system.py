"""GET /system: GPUs, the host and the running servers' live numbers (the dashboard)."""

from __future__ import annotations

from llamaherd.schema.common import Answer, ModelState, Reading


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


# -- herd top --json -----------------------------------------------------------------
class LoadedModel(Answer):
    """A loaded model that has no live numbers yet (starting, or not sampled yet)."""

    model: str | None
    state: ModelState


class Top(Answer):
    """What `herd top --json` prints: /status's loaded models, each with its live
    numbers (a ServerLive, its `state` /status's) once it has them, and /system's GPUs
    and host."""

    current: str | None
    models: list[ServerLive | LoadedModel]
    gpus: list[Gpu]
    gpu_note: str | None
    system: Host | None
    sampled_at: float | None

"""herd.toml's contract: the pydantic models the rest of llamaherd codes against.

Field constraints and examples live on the fields, so error messages and hints are
derived from them (explain.py), not written twice.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llamaherd.config.locate import DEFAULT_API_PORT, DEFAULT_HOST
from llamaherd.errors import UsageError
from llamaherd.netaddr import local_url

ID_PATTERN = r"^[A-Za-z0-9._-]+$"
"""Profile ids travel in URLs, CLI arguments and llama-server's --alias: keep them plain."""

# Constrained number types. They sit inside the annotation (not on Field) so that they
# also work in unions such as `int | Literal["auto", "all"]`.
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
Seed = Annotated[int, Field(ge=-1, le=2**32 - 1)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    """No unknown keys (typos must not pass silently) and no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Sampling(_Strict):
    """Server-side sampler defaults. None leaves llama-server's own default in place."""

    temperature: NonNegativeFloat | None = Field(None, examples=[0.7])
    top_p: Fraction | None = Field(None, examples=[0.95])
    top_k: NonNegativeInt | None = Field(None, examples=[40])
    min_p: Fraction | None = Field(None, examples=[0.01])
    repeat_penalty: NonNegativeFloat | None = Field(None, examples=[1.0])
    presence_penalty: float | None = Field(None, examples=[0.0])
    frequency_penalty: float | None = Field(None, examples=[0.0])
    seed: Seed | None = Field(None, examples=[42])


class Placement(_Strict):
    """Where the weights go: GPUs, CPU, or llama.cpp's automatic `--fit`. All optional."""

    fit: bool | None = Field(None, examples=[True])
    fit_target: list[NonNegativeInt] | None = Field(None, min_length=1, examples=[[1024, 1024]])
    n_gpu_layers: NonNegativeInt | Literal["auto", "all"] | None = Field(None, examples=["all"])
    tensor_split: list[NonNegativeFloat] | None = Field(None, min_length=1, examples=[[24, 16]])
    n_cpu_moe: NonNegativeInt | None = Field(None, examples=[10])
    override_tensor: list[str] | None = Field(
        None, min_length=1, examples=[["blk\\.[0-9]+\\.ffn_.*_exps=CPU"]]
    )
    main_gpu: NonNegativeInt | None = Field(None, examples=[0])
    devices: list[str] | None = Field(None, min_length=1, examples=[["CUDA0", "CUDA1"]])


class BenchSettings(_Strict):
    """`[models.<id>.bench]`: how `herd bench humaneval` asks this model. Decoding is always
    greedy; these are what legitimately differs between models (see docs/benchmarks.md)."""

    system_prompt: str | None = Field(None, min_length=1, examples=["You are a Python expert."])
    reasoning: Literal["none", "low", "medium", "high"] | None = Field(None, examples=["high"])
    """Sent as `reasoning_effort`; llama-server hands it to the chat template (GPT-OSS)."""
    reasoning_format: Literal["none", "auto", "deepseek", "deepseek-legacy"] | None = Field(
        None, examples=["none"]
    )
    """llama-server's --reasoning-format for these requests; "none" keeps thinking inline."""
    max_tokens: PositiveInt | None = Field(None, examples=[4096])
    """Tokens per answer (default 4096, the original setup's; reasoning models need thousands)."""


class Profile(_Strict):
    """One runnable model: a GGUF file plus everything llama-server needs to serve it."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field("", examples=["GLM-4.7 Flash Q4_K_M"])
    file: Path = Field(strict=False, examples=["glm/GLM-4.7-Flash-Q4_K_M.gguf"])
    ctx: NonNegativeInt | None = Field(None, examples=[32768])
    """0 asks llama-server for the model's trained context (and stops --fit shrinking it)."""
    parallel: PositiveInt | None = Field(None, examples=[1])
    threads: PositiveInt | None = Field(None, examples=[8])
    flash_attn: Literal["on", "off", "auto"] | None = Field(None, examples=["on"])
    cache_type_k: str | None = Field(None, min_length=1, examples=["q8_0"])
    cache_type_v: str | None = Field(None, min_length=1, examples=["q8_0"])
    best_for: str = Field("", examples=["coding agents"])
    speed_hint: str = Field("", examples=["~147 t/s"])
    """The speed this profile is known for (the original setup's SPEED): shown until herd
    has measured one."""
    sampling: Sampling = Field(default_factory=Sampling)
    placement: Placement = Field(default_factory=Placement)
    args: list[str] = Field(default_factory=list, examples=[["--reasoning-format", "none"]])
    env: dict[str, str] = Field(default_factory=dict, examples=[{"CUDA_VISIBLE_DEVICES": "0"}])
    aliases: list[str] = Field(default_factory=list, examples=[["glm", "fast"]])
    extends: str | None = Field(None, examples=["glm-flash-q4"])
    persistent: bool = Field(False, examples=[True])
    """Never evicted to make room for another model."""
    priority: int = Field(0, examples=[10])
    """When several starts wait their turn, the highest priority goes first."""
    ttl: PositiveFloat | None = Field(None, examples=[600])
    """Seconds without requests after which the model is unloaded; unset: never."""
    restart: Literal["on-failure", "never"] = Field("on-failure", examples=["never"])
    """What to do when llama-server dies on its own: start it again (with backoff), or not."""
    max_restarts: NonNegativeInt = Field(3, examples=[3])
    """Restarts allowed in a row before the model stays failed; a clean hour resets it."""
    runtime: Literal["native", "docker"] | None = Field(None, examples=["docker"])
    """How llama-server runs; unset: the top-level `runtime` (docs/docker.md)."""
    gpus: list[NonNegativeInt] | None = Field(None, min_length=1, examples=[[0, 1]])
    """GPU indices this model may use (docker --gpus, else CUDA_VISIBLE_DEVICES)."""
    rpc: list[str] = Field(default_factory=list, examples=[["192.168.1.20:50052"]])
    """llama.cpp RPC workers (`herd worker`) that hold part of the model (--rpc)."""
    bench: BenchSettings = Field(default_factory=BenchSettings, examples=[{"max_tokens": 4096}])
    """`herd bench humaneval`'s settings for this model (system prompt, reasoning ...)."""
    kv_keep: bool = Field(True, examples=[False])
    """Save its prompt cache when it is swapped out and restore it when it starts again
    (docs/kv-keep.md); false: every start begins with an empty cache."""
    kv_restore: Literal["start", "lazy"] | None = Field(None, examples=["lazy"])
    """When its saved prompt caches go back; unset: `[server] kv_restore`."""

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data


class ServerSettings(_Strict):
    """The `[server]` table: where herd listens and how long it waits for llama-server."""

    host: str = Field(DEFAULT_HOST, min_length=1, examples=["127.0.0.1"])
    port: PortNumber = Field(8080, examples=[8080])
    """The public endpoint (OpenAI/Anthropic API, web UI)."""
    api_port: PortNumber = Field(DEFAULT_API_PORT, examples=[8081])
    """The management API (/models, /status, /switch ...)."""
    api_key: str | None = Field(None, min_length=1, examples=["change-me"])
    start_timeout: PositiveFloat = Field(300.0, examples=[300])
    stop_timeout: PositiveFloat = Field(10.0, examples=[10])
    max_loaded: PositiveInt | Literal["auto"] = Field("auto", examples=["auto", 2])
    """`auto`: keep every model that fits in the GPUs' (and RAM's) memory beside the others,
    evicting idle ones by need (docs/scheduling.md); a number also caps how many run."""
    gpu_margin_mb: NonNegativeInt = Field(1024, examples=[1024])
    """MiB the scheduler leaves free on each GPU (driver, CUDA contexts, other programs)."""
    ram_margin_mb: NonNegativeInt = Field(2048, examples=[2048])
    """MiB of host RAM the scheduler leaves free for the system and other programs."""
    min_resident: NonNegativeFloat = Field(30.0, examples=[30])
    """Seconds a freshly loaded model is evicted only when nothing else can make room."""
    max_swap_wait: NonNegativeFloat = Field(30.0, examples=[30])
    """Seconds a request for another model waits while the models it needs the room of
    are serving; then new requests for those wait, and the swap is next."""
    swap_on_request: bool = Field(True, examples=[True])
    """A gateway request naming another profile in `model` switches to it first."""
    queue_size: NonNegativeInt = Field(64, examples=[64])
    """Requests that may wait for a switch at once; more get 503 with Retry-After."""
    queue_timeout: PositiveFloat = Field(300.0, examples=[300])
    """Seconds a request may wait for a switch before it gets 503."""
    drain_timeout: PositiveFloat = Field(30.0, examples=[30])
    """Seconds a stop (herd down, POST /stop, a restart) waits for in-flight requests to
    finish before stopping a server. Making room never stops a busy model: it waits for it
    (up to queue_timeout)."""
    upstream_timeout: PositiveFloat = Field(600.0, examples=[600])
    """Seconds the gateway waits for a byte from llama-server (a hung one): before the
    response starts it answers 504, mid-response the response is cut short."""
    retry_failed_after: NonNegativeFloat = Field(60.0, examples=[60])
    """Seconds a model that failed to start answers requests with that failure instead of
    being started again (until its profile or file changes; `herd switch` always retries)."""
    max_request_mb: PositiveFloat = Field(64.0, examples=[64])
    """Largest request body the gateway accepts (413 above it)."""
    allowed_hosts: list[str] = Field(default_factory=list, examples=[["herd.example.com"]])
    """Host names besides the bound address that requests may name (a reverse proxy's)."""
    allowed_origins: list[str] = Field(default_factory=list, examples=[["http://localhost:3000"]])
    """Web origins whose pages may call herd (CORS); others get 403. `*`: any page."""
    max_header_kb: PositiveInt = Field(64, examples=[64])
    """Largest request line + headers a client may send (431 above it)."""
    max_headers: PositiveInt = Field(100, examples=[100])
    """Most header lines in one request (431 above it)."""
    header_timeout: PositiveFloat = Field(10.0, examples=[10])
    """Seconds a client has to send a request's line and headers; then it is cut off."""
    body_timeout: PositiveFloat = Field(30.0, examples=[30])
    """Seconds a request body may stall (no byte arriving) before the client is cut off."""
    max_connections: PositiveInt = Field(4096, examples=[4096])
    """Open client connections on both ports together; more are closed at once."""
    activity_days: PositiveFloat = Field(30.0, examples=[30])
    """Days the activity log (one record per gateway request) keeps a record."""
    activity_rows: PositiveInt = Field(100_000, examples=[100_000])
    """Most records the activity log keeps; the oldest go first."""
    capture: NonNegativeInt = Field(0, examples=[0, 50])
    """Keep the bodies of the last N gateway requests and responses in memory, for
    GET /activity/{id}/capture (0: off). Auth headers are never kept."""
    kv_keep_budget_mb: NonNegativeInt = Field(4096, examples=[4096])
    """MiB of disk for saved prompt caches (state dir, `kv/`); the least recently used
    files go first. 0: no model's cache is kept (docs/kv-keep.md)."""
    kv_keep_min_tokens: NonNegativeInt = Field(1024, examples=[1024])
    """A slot is saved when a model stops only if it holds at least this many tokens."""
    kv_keep_save_timeout: PositiveFloat = Field(10.0, examples=[10])
    """Seconds saving (at a stop) or restoring (at a start, or before a request) may take;
    then herd gives up and the swap or request goes on without the cache."""
    kv_restore: Literal["start", "lazy"] = Field("start", examples=["lazy"])
    """`start`: a model's saved prompt caches are restored before it is declared ready;
    `lazy`: only when a request's prompt shares at least kv_keep_min_tokens with one."""

    @property
    def public_url(self) -> str:
        """The gateway's address: what clients (web UI, SDKs, Claude Code) point at."""
        return local_url(self.host, self.port)

    @property
    def api_url(self) -> str:
        """The management API's address."""
        return local_url(self.host, self.api_port)


class DockerSettings(_Strict):
    """The `[docker]` table: the image the docker runtime runs (`herd build --docker`)."""

    image: str = Field("llamaherd/llama-server:cuda", min_length=1, examples=["my/llama:cuda"])
    gpus: bool = Field(True, examples=[False])
    """Pass GPUs to containers (false for the CPU image or a box without the toolkit)."""
    args: list[str] = Field(default_factory=list, examples=[["--shm-size", "1g"]])
    """Extra `docker run` options."""


class ClaudeRoute(_Strict):
    """`[claude.route]`: which profile answers a request that names the `auto` model
    (what `herd claude --route` sets). Unset entries fall back as documented."""

    small: str | None = Field(None, min_length=1, examples=["glm-flash-q4"])
    """Haiku-class background calls (titles, summaries); unset: the current model."""
    thinking: str | None = Field(None, min_length=1, examples=["gpt-oss-120b"])
    """Requests with extended thinking on; unset: the current model."""
    long_context: str | None = Field(None, min_length=1, examples=["qwen3-next-ud-q5"])
    """Requests over long_context_tokens; unset: the profile with the largest ctx."""
    long_context_tokens: PositiveInt = Field(32768, examples=[32768])
    """Estimated prompt tokens (request bytes / 4) above which a request is long."""


class ClaudeSettings(_Strict):
    """`[claude]`: how `herd claude` runs Claude Code against the gateway."""

    config_dir: str = Field("~/.claude-local", min_length=1, examples=["~/.claude-local"])
    """Claude Code's CLAUDE_CONFIG_DIR; never the user's normal ~/.claude."""
    binary: str | None = Field(None, min_length=1, examples=["~/.local/bin/claude"])
    """The `claude` executable; unset: PATH, then the npm package."""
    main: str | None = Field(None, min_length=1, examples=["qwen3-coder-ud-q5"])
    """ANTHROPIC_MODEL; unset: the model running now (or default_model)."""
    opus: str | None = Field(None, min_length=1, examples=["gpt-oss-120b"])
    sonnet: str | None = Field(None, min_length=1, examples=["qwen3-coder-ud-q5"])
    haiku: str | None = Field(None, min_length=1, examples=["glm-flash-q4"])
    """Claude Code's model classes; unset: the same model as `main`."""
    api_timeout_ms: PositiveInt = Field(3_000_000, examples=[3_000_000])
    """API_TIMEOUT_MS: local prefill of a long prompt can take minutes."""
    sandbox: Literal["auto", "on", "strict", "off"] = Field("auto", examples=["strict"])
    """herd's sandbox around Claude Code: auto (when it can run here), on (required),
    strict (required, and an empty home directory), off."""
    pass_env: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list, examples=[["DATABASE_URL"]]
    )
    """Variables passed into the sandbox although they look like credentials."""
    route: ClaudeRoute = Field(default_factory=ClaudeRoute)

    def profile_keys(self) -> dict[str, str]:
        """Every key that names a profile, as `claude.<key>` -> the name given."""
        named = {k: getattr(self, k) for k in ("main", "opus", "sonnet", "haiku")}
        named |= {
            f"route.{k}": getattr(self.route, k) for k in ("small", "thinking", "long_context")
        }
        return {f"claude.{k}": v for k, v in named.items() if v is not None}


class HerdFile(_Strict):
    """The top level of herd.toml. Profiles are checked one by one later (extends needs
    the raw tables), so here `models` is only required to be a table."""

    models_dir: str | None = Field(None, min_length=1, examples=["~/models"])
    llama_server: str | None = Field(None, min_length=1, examples=["~/llama.cpp/llama-server"])
    default_model: str | None = Field(None, min_length=1, examples=["glm-flash-q4"])
    humaneval_data: str | None = Field(None, min_length=1, examples=["~/data/humanevalplus"])
    server: ServerSettings = Field(default_factory=ServerSettings)
    runtime: Literal["native", "docker"] = Field("native", examples=["docker"])
    docker: DockerSettings = Field(default_factory=DockerSettings)
    claude: ClaudeSettings = Field(default_factory=ClaudeSettings)
    defaults: dict[str, Any] = Field(default_factory=dict)
    """`[defaults]`: profile keys every profile starts from; `extends` and the profile's
    own keys come on top (docs/migrate.md)."""
    models: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Config:
    """A loaded, fully checked herd.toml. `default_model` is always a profile id (an alias
    given in the file is resolved), so `config.models[config.default_model]` is safe."""

    path: Path | None
    models_dir: Path
    llama_server: Path | None = None
    default_model: str | None = None
    humaneval_data: Path | None = None
    """A local HumanEval+ copy (file or folder) for `herd bench humaneval` offline."""
    server: ServerSettings = field(default_factory=ServerSettings)
    models: dict[str, Profile] = field(default_factory=dict)
    docker: DockerSettings = field(default_factory=DockerSettings)
    claude: ClaudeSettings = field(default_factory=ClaudeSettings)

    def resolve(self, name: str) -> Profile:
        """The profile called `name`, by id or alias; a UsageError that suggests otherwise."""
        if name in self.models:
            return self.models[name]
        for profile in self.models.values():
            if name in profile.aliases:
                return profile
        names = sorted(self.models) + sorted(a for p in self.models.values() for a in p.aliases)
        if not self.models:
            where = f" in {self.path}" if self.path else ""
            raise UsageError(f"unknown model '{name}'; no models are configured{where}")
        close = difflib.get_close_matches(name, names, n=1)
        maybe = f"did you mean '{close[0]}'? " if close else ""
        raise UsageError(f"unknown model '{name}'; {maybe}known: {', '.join(sorted(self.models))}")

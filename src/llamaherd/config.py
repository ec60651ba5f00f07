"""herd.toml: the model profiles and server settings, loaded and checked in one place.

Reading order, top to bottom:

1. The models (`Sampling`, `Placement`, `Profile`, `ServerSettings`, `Config`): the
   contract the rest of llamaherd codes against. Field constraints and examples live on
   the fields, so error messages and hints are derived from them, not written twice.
2. `find_config_path` / `load_config` / `parse_config`: the public entry points.
3. The checks pydantic cannot express (extends chains, aliases, reserved `args`, files
   on disk, loopback host without an API key).
4. `_explain`: turns a pydantic error into one ConfigError line naming the file, the
   profile and the key, plus a hint. Users never see a raw pydantic dump or a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from llamaherd import paths
from llamaherd.errors import ConfigError, UsageError
from llamaherd.runtime import rpc

CONFIG_NAME = "herd.toml"
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
    """Tokens per answer (default 768, EvalPlus's); reasoning models need thousands."""


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
    sampling: Sampling = Field(default_factory=Sampling)
    placement: Placement = Field(default_factory=Placement)
    args: list[str] = Field(default_factory=list, examples=[["--reasoning-format", "none"]])
    env: dict[str, str] = Field(default_factory=dict, examples=[{"CUDA_VISIBLE_DEVICES": "0"}])
    aliases: list[str] = Field(default_factory=list, examples=[["glm", "fast"]])
    extends: str | None = Field(None, examples=["glm-flash-q4"])
    persistent: bool = Field(False, examples=[True])
    """Never evicted to make room for another model (with [server] max_loaded > 1)."""
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

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data


class ServerSettings(_Strict):
    """The `[server]` table: where herd listens and how long it waits for llama-server."""

    host: str = Field("127.0.0.1", min_length=1, examples=["127.0.0.1"])
    port: PortNumber = Field(8080, examples=[8080])
    """The public endpoint (OpenAI/Anthropic API, web UI)."""
    api_port: PortNumber = Field(8081, examples=[8081])
    """The management API (/models, /status, /switch ...)."""
    api_key: str | None = Field(None, min_length=1, examples=["change-me"])
    start_timeout: PositiveFloat = Field(120.0, examples=[120])
    stop_timeout: PositiveFloat = Field(10.0, examples=[10])
    max_loaded: PositiveInt = Field(1, examples=[2])
    """Models kept running at once; past it the least recently used idle one is evicted."""
    swap_on_request: bool = Field(True, examples=[True])
    """A gateway request naming another profile in `model` switches to it first."""
    queue_size: NonNegativeInt = Field(64, examples=[64])
    """Requests that may wait for a switch at once; more get 503 with Retry-After."""
    queue_timeout: PositiveFloat = Field(300.0, examples=[300])
    """Seconds a request may wait for a switch before it gets 503."""
    drain_timeout: PositiveFloat = Field(30.0, examples=[30])
    """Seconds a switch waits for in-flight requests to finish before stopping a server."""
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

    @property
    def public_url(self) -> str:
        """The gateway's address: what clients (web UI, SDKs, Claude Code) point at."""
        return _url(self.host, self.port)

    @property
    def api_url(self) -> str:
        """The management API's address."""
        return _url(self.host, self.api_port)


def _url(host: str, port: int) -> str:
    """A URL a local client can use; a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


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


class _HerdFile(_Strict):
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


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def find_config_path(explicit: str | Path | None = None) -> Path:
    """The herd.toml to use: --config, then $HERD_CONFIG, ./herd.toml, the user config dir.

    An explicit path (or $HERD_CONFIG) that does not exist is an error rather than a
    fall-through: silently using another file would be far more confusing.
    """
    if explicit is not None:
        return _must_exist(Path(explicit), hint="check the --config path")
    env = os.environ.get("HERD_CONFIG")
    if env:
        return _must_exist(Path(env), hint="$HERD_CONFIG points here; fix it or unset it")
    here = Path.cwd() / CONFIG_NAME
    if here.is_file():
        return here
    user = paths.config_dir() / CONFIG_NAME
    if user.is_file():
        return user
    raise ConfigError(
        "no herd.toml found",
        hint=(
            f"looked at --config, $HERD_CONFIG, {here} and {user}; "
            f"run `herd demo` to write one, or create {user} with a [models.<id>] table"
        ),
    )


def load_config(path: str | Path | None = None, *, check_files: bool = True) -> Config:
    """Find (see find_config_path), read and check herd.toml."""
    found = find_config_path(path)
    try:
        text = found.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", path=found) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=found) from None
    config = parse_config(text, found, check_files=check_files)
    config.server = _ports_from_env(config.server, found)
    return config


# Environment variables that move the ports without editing the file, so a second daemon
# (the demo beside your own, a test) can run; the daemon started by `herd up` inherits them.
PORT_VARIABLES = {"HERD_PORT": "port", "HERD_API_PORT": "api_port"}


def _ports_from_env(server: ServerSettings, path: Path) -> ServerSettings:
    update = {}
    for variable, key in PORT_VARIABLES.items():
        value = os.environ.get(variable)
        if not value:
            continue
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise ConfigError(
                f"${variable}={value!r} is not a port number",
                path=path,
                key=f"server.{key}",
                hint=f"set {variable} to 1-65535 or unset it",
            )
        update[key] = int(value)
    if not update:
        return server
    server = server.model_copy(update=update)
    _check_server(server, path)
    return server


def parse_config(text: str, path: Path | None = None, *, check_files: bool = True) -> Config:
    """Check herd.toml's text. `path` names the file in messages and anchors relative paths
    (the current directory when None). `check_files=False` skips looking for the GGUF
    files, for commands that only read the profiles."""
    data = _parse_toml(text, path)
    _check_characters(data, path)
    top = _validate(
        _HerdFile,
        data,
        path=path,
        table="",
        sections={
            "": _HerdFile,
            "server": ServerSettings,
            "docker": DockerSettings,
            "claude": ClaudeSettings,
            "claude.route": ClaudeRoute,
        },
    )
    base = path.parent if path is not None else Path.cwd()
    models_dir = _resolve_path(top.models_dir, base) if top.models_dir else base / "models"
    _check_server(top.server, path)
    models = _load_profiles(top.models, models_dir, path, check_files=check_files)
    # A profile without its own runtime takes the file's, so consumers read one field.
    models = {
        pid: p if p.runtime else p.model_copy(update={"runtime": top.runtime})
        for pid, p in models.items()
    }
    config = Config(
        path=path,
        models_dir=models_dir,
        # Only resolved here: binaries.find_llama_server checks it (and `herd doctor` can
        # then still report a config whose binary is missing).
        llama_server=_resolve_path(top.llama_server, base) if top.llama_server else None,
        humaneval_data=_resolve_path(top.humaneval_data, base) if top.humaneval_data else None,
        server=top.server,
        models=models,
        docker=top.docker,
    )
    if top.default_model is not None:
        config.default_model = _default_model(config, top.default_model)
    config.claude = _claude_profiles(config, top.claude)
    return config


# --------------------------------------------------------------------------------------
# Checks pydantic cannot express
# --------------------------------------------------------------------------------------

# Flags herd sets itself in argv.py; a second copy in `args` would fight with it.
_RESERVED_FLAGS: dict[str, str] = {
    "-m": "set the model with `file`",
    "--model": "set the model with `file`",
    "-mu": "herd serves local files: download the GGUF and set `file`",
    "--model-url": "herd serves local files: download the GGUF and set `file`",
    "-hf": "herd serves local files: download the GGUF and set `file`",
    "-hfr": "herd serves local files: download the GGUF and set `file`",
    "--hf-repo": "herd serves local files: download the GGUF and set `file`",
    "--host": "herd chooses llama-server's address; set the public one with [server] host",
    "--port": "herd chooses llama-server's port; set the public one with [server] port",
    "-a": "herd passes --alias <id>; add other names with `aliases`",
    "--alias": "herd passes --alias <id>; add other names with `aliases`",
    "--api-key": "herd's gateway checks the key; set [server] api_key",
    "--api-key-file": "herd's gateway checks the key; set [server] api_key",
    "--rpc": "list the workers in the profile's rpc = [...]",
    "--no-slots": "herd's dashboard reads /slots; it cannot be turned off",
}

_TABLE_KEYS = ("sampling", "placement", "env", "bench")
"""Profile tables that `extends` merges key by key; every other key is replaced whole."""
_NOT_INHERITED = ("aliases",)
"""A child with its parent's aliases would claim the same names twice."""


def _load_profiles(
    raw: dict[str, Any], models_dir: Path, path: Path | None, *, check_files: bool
) -> dict[str, Profile]:
    """Validate every [models.<id>] table, parents before children (so a mistake in an
    inherited key is reported at the parent), otherwise in file order."""
    for pid, table in raw.items():
        if not re.fullmatch(ID_PATTERN, pid):
            suggestion = re.sub(r"[^A-Za-z0-9._-]+", "-", pid).strip("-") or "my-model"
            raise ConfigError(
                f"invalid profile id '{pid}'",
                path=path,
                key=f"models.{pid}",
                hint=f"use letters, digits, '.', '_' and '-' only, e.g. [models.{suggestion}]",
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"wrong type: expected a table, got {_got(table)}",
                path=path,
                key=f"models.{pid}",
                hint=f'write it as a table: [models.{pid}] then file = "model.gguf"',
            )
        if "id" in table:
            raise ConfigError(
                "unknown key 'id'",
                path=path,
                profile=pid,
                key="id",
                hint=f"the id is the table name [models.{pid}]; remove the key",
            )

    merged: dict[str, dict[str, Any]] = {}
    models: dict[str, Profile] = {}
    for pid in _extends_order(raw, path):
        parent = raw[pid].get("extends")
        own = raw[pid]
        merged[pid] = _merge(merged[parent], own) if parent is not None else dict(own)
        data = {**merged[pid], "id": pid}
        if isinstance(data.get("file"), str):
            data["file"] = _resolve_path(data["file"], models_dir)
        elif "file" not in data:
            raise ConfigError(
                "missing required key 'file' (the GGUF to serve)",
                path=path,
                profile=pid,
                key="file",
                hint=f'e.g. file = "glm/GLM-4.7-Flash-Q4_K_M.gguf" (relative to {models_dir})',
            )
        profile = _validate(
            Profile,
            data,
            path=path,
            table=f"models.{pid}",
            sections={
                "": Profile,
                "sampling": Sampling,
                "placement": Placement,
                "bench": BenchSettings,
            },
            profile=pid,
        )
        _check_args(profile, path)
        _check_override_tensor(profile, path)
        _check_rpc(profile, path)
        if check_files:
            _check_model_file(profile, models_dir, path)
        models[pid] = profile
    models = {pid: models[pid] for pid in raw}  # file order: `herd models` lists them so
    _check_aliases(models, path)
    return models


def _extends_order(raw: dict[str, dict[str, Any]], path: Path | None) -> list[str]:
    """Profile ids with every parent before its children; unknown parents and cycles are
    errors. File order is kept wherever extends allows it."""
    order: list[str] = []
    done: set[str] = set()

    def visit(pid: str, chain: list[str]) -> None:
        if pid in done:
            return
        if pid in chain:
            cycle = [*chain[chain.index(pid) :], pid]
            raise ConfigError(
                f"extends cycle: {' -> '.join(cycle)}",
                path=path,
                profile=cycle[0],
                key="extends",
                hint="remove `extends` from one of them",
            )
        parent = raw[pid].get("extends")
        if parent is not None:
            if not isinstance(parent, str):
                raise ConfigError(
                    f"wrong type: expected a profile id, got {_got(parent)}",
                    path=path,
                    profile=pid,
                    key="extends",
                    hint='e.g. extends = "glm-flash-q4"',
                )
            if parent not in raw:
                raise ConfigError(
                    f"extends unknown profile '{parent}'",
                    path=path,
                    profile=pid,
                    key="extends",
                    hint=_did_you_mean(parent, list(raw), what="profiles"),
                )
            visit(parent, [*chain, pid])
        done.add(pid)
        order.append(pid)

    for pid in raw:
        visit(pid, [])
    return order


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child profile over its (already merged) parent: tables key by key, lists whole."""
    out = {k: v for k, v in parent.items() if k not in _NOT_INHERITED}
    for key, value in child.items():
        if key in _TABLE_KEYS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# Free text, shown or sent in a request body, never put in an argv: it may span lines.
_MULTILINE_KEYS = ("name", "best_for", "bench.system_prompt")


def _check_characters(value: Any, path: Path | None, keys: tuple[str, ...] = ()) -> None:
    """NUL and line breaks, in keys and values: almost every string here ends up in
    llama-server's (or docker's, or claude's) argv or environment, which cannot hold a
    NUL, and where a line break would only cause trouble; the start would die of it."""
    items = value.items() if isinstance(value, dict) else []
    for key, item in items:
        shown = key if key.isprintable() else repr(key)
        _check_text(key, path, (*keys, shown), is_key=True)
        _check_characters(item, path, (*keys, shown))
    for item in value if isinstance(value, list) else []:
        _check_characters(item, path, keys)
    if isinstance(value, str):
        _check_text(value, path, keys)


def _check_text(text: str, path: Path | None, keys: tuple[str, ...], is_key: bool = False) -> None:
    in_profile = keys[0] == "models" and len(keys) > 1
    profile, key = (keys[1], ".".join(keys[2:])) if in_profile else (None, ".".join(keys))
    if "\0" in text:
        bad, hint = "a NUL character", "remove the \\u0000; no program can be passed one"
    elif ("\n" in text or "\r" in text) and (is_key or key not in _MULTILINE_KEYS):
        bad = "a line break"
        hint = (
            "it reaches a command line or the environment: write it on one line; "
            "only name, best_for and bench.system_prompt may span lines"
        )
    else:
        return
    raise ConfigError(
        f"{bad} in {'the key' if is_key else 'the value'} {text!r}",
        path=path,
        profile=profile,
        key=key or None,
        hint=hint,
    )


def _check_args(profile: Profile, path: Path | None) -> None:
    """`args` go last so they can override herd's choices, except the ones herd relies on."""
    for arg in profile.args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--"):
            flag = flag.replace("_", "-")  # llama.cpp treats --n_gpu_layers as --n-gpu-layers
        if flag in _RESERVED_FLAGS:
            raise ConfigError(
                f"'{arg}' is set by herd itself",
                path=path,
                profile=profile.id,
                key="args",
                hint=_RESERVED_FLAGS[flag],
            )
        if arg.startswith("-") and any(c.isspace() for c in arg):
            words = ", ".join(f'"{w}"' for w in arg.split())
            raise ConfigError(
                f"'{arg}' is one item but looks like several words",
                path=path,
                profile=profile.id,
                key="args",
                hint=f"give each word its own item: args = [{words}]",
            )


def _check_override_tensor(profile: Profile, path: Path | None) -> None:
    """argv.py passes these as one comma-joined --override-tensor (llama.cpp warns about a
    repeated flag); llama.cpp splits at ',' then '='. Catch what would break there."""
    for entry in profile.placement.override_tensor or []:
        if "=" not in entry or "," in entry or entry.startswith("=") or entry.endswith("="):
            example = Placement.model_fields["override_tensor"].examples[0]  # type: ignore[index]
            raise ConfigError(
                f"invalid value {_toml(entry)}: expected 'pattern=buffer', one override per item",
                path=path,
                profile=profile.id,
                key="placement.override_tensor",
                hint=f"e.g. [models.{profile.id}.placement] override_tensor = {_toml(example)}",
            )


def _check_rpc(profile: Profile, path: Path | None) -> None:
    for endpoint in profile.rpc:
        try:
            rpc.parse_endpoint(endpoint)
        except ValueError as error:
            raise ConfigError(
                f"invalid RPC worker: {error}",
                path=path,
                profile=profile.id,
                key="rpc",
                hint=f'e.g. rpc = ["192.168.1.20:{rpc.DEFAULT_PORT}"] (what `herd worker` prints)',
            ) from None


def _check_aliases(models: dict[str, Profile], path: Path | None) -> None:
    """Every id and alias must name exactly one profile, or `herd switch NAME` is ambiguous."""
    owner: dict[str, str] = {pid: pid for pid in models}
    for pid, profile in models.items():
        for alias in profile.aliases:
            if not alias or any(c.isspace() for c in alias):
                raise ConfigError(
                    f"invalid alias {alias!r}",
                    path=path,
                    profile=pid,
                    key="aliases",
                    hint="aliases are names for `herd switch` and API requests: no spaces",
                )
            if alias in owner:
                other = owner[alias]
                if other == pid and alias == pid:
                    clash = "is this profile's own id"
                elif other == pid:
                    clash = "is listed twice"
                elif alias == other:
                    clash = f"is the id of profile '{other}'"
                else:
                    clash = f"is also an alias of profile '{other}'"
                raise ConfigError(
                    f"duplicate alias '{alias}': it {clash}",
                    path=path,
                    profile=pid,
                    key="aliases",
                    hint="each id and alias must name exactly one profile; remove or rename it",
                )
            owner[alias] = pid


def _check_server(server: ServerSettings, path: Path | None) -> None:
    """DESIGN: both ports stay on loopback unless an API key guards them."""
    if server.port == server.api_port:
        raise ConfigError(
            f"port and api_port are both {server.port}",
            path=path,
            key="server.api_port",
            hint="the public endpoint and the management API need their own ports, "
            "e.g. port = 8080, api_port = 8081",
        )
    if not _is_loopback(server.host) and server.api_key is None:
        raise ConfigError(
            f"host '{server.host}' is reachable from other machines but no api_key is set",
            path=path,
            key="server.host",
            hint='set api_key = "<secret>" in [server], or keep host = "127.0.0.1"',
        )
    for origin in server.allowed_origins:
        if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
            raise ConfigError(
                f"allowed_origins entry '{origin}' is not a web origin",
                path=path,
                key="server.allowed_origins",
                hint='write scheme://host[:port] with no path, e.g. "http://localhost:3000"',
            )


# An origin as browsers send it: scheme://host[:port], no path (RFC 6454).
ORIGIN_PATTERN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[^/:\s\[\]]+)(:\d{1,5})?")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything


def _check_model_file(profile: Profile, models_dir: Path, path: Path | None) -> None:
    if profile.file.is_file():
        return
    what = "is a directory, not a GGUF file" if profile.file.is_dir() else "not found"
    raise ConfigError(
        f"model file {what}: {profile.file}",
        path=path,
        profile=profile.id,
        key="file",
        hint=f"models_dir is {models_dir}; download the GGUF there, fix `file`, "
        "or set models_dir at the top of the file",
    )


def _default_model(config: Config, name: str) -> str:
    try:
        return config.resolve(name).id
    except UsageError:
        raise ConfigError(
            f"default_model '{name}' is not a profile",
            path=config.path,
            key="default_model",
            hint=_did_you_mean(name, list(config.models), what="profiles"),
        ) from None


def _claude_profiles(config: Config, claude: ClaudeSettings) -> ClaudeSettings:
    """[claude] names profiles by id or alias; keep ids, so the gateway compares plainly."""
    ids: dict[str, str] = {}
    for key, name in claude.profile_keys().items():
        try:
            ids[key] = config.resolve(name).id
        except UsageError:
            raise ConfigError(
                f"'{name}' is not a profile",
                path=config.path,
                key=key,
                hint=_did_you_mean(name, list(config.models), what="profiles"),
            ) from None
    route = claude.route.model_copy(
        update={k.split(".")[-1]: v for k, v in ids.items() if k.startswith("claude.route.")}
    )
    top = {k.split(".")[-1]: v for k, v in ids.items() if not k.startswith("claude.route.")}
    return claude.model_copy(update={**top, "route": route})


def _resolve_path(value: str, base: Path) -> Path:
    """`~` expanded, relative paths anchored at `base`, made absolute without following
    symlinks (messages then show the path the user wrote)."""
    return Path(os.path.normpath(base.absolute() / Path(value).expanduser()))


def _must_exist(path: Path, *, hint: str) -> Path:
    path = path.expanduser().absolute()
    if not path.is_file():
        raise ConfigError("config file not found", path=path, hint=hint)
    return path


# --------------------------------------------------------------------------------------
# TOML and pydantic errors -> one line with file, profile, key and hint
# --------------------------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)

_RANGE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "string_too_short",
    "string_pattern_mismatch",
}

# Names people bring from llama.cpp flags or the old models.conf.
_SYNONYMS = {
    "temp": "temperature",
    "model": "file",
    "path": "file",
    "gguf": "file",
    "ctx_size": "ctx",
    "n_ctx": "ctx",
    "context": "ctx",
    "context_size": "ctx",
    "c": "ctx",
    "np": "parallel",
    "n_parallel": "parallel",
    "t": "threads",
    "fa": "flash_attn",
    "ctk": "cache_type_k",
    "ctv": "cache_type_v",
    "ngl": "n_gpu_layers",
    "gpu_layers": "n_gpu_layers",
    "ts": "tensor_split",
    "ot": "override_tensor",
    "mg": "main_gpu",
    "device": "devices",
    "dev": "devices",
    "extra_args": "args",
    "alias": "aliases",
    "description": "best_for",
    "model_dir": "models_dir",
}


def _parse_toml(text: str, path: Path | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        hint = 'check the syntax there; strings need quotes, e.g. file = "model.gguf"'
        where = re.search(r"line (\d+)", message)
        if where:
            lines = text.splitlines()
            number = int(where.group(1))
            if 0 < number <= len(lines) and lines[number - 1].strip():
                hint = f"line {number} reads {lines[number - 1].strip()!r}; {hint}"
        raise ConfigError(f"invalid TOML: {message}", path=path, hint=hint) from None


def _validate(
    model: type[_M],
    data: dict[str, Any],
    *,
    path: Path | None,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    profile: str | None = None,
) -> _M:
    """model.model_validate, with the first error explained as a ConfigError.

    `table` is the TOML table the data came from ("" for the top level, "models.glm"),
    `sections` maps each sub-table path to its model, so that an unknown key can be
    pointed at the table where it belongs.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _explain(
            error, model, path=path, table=table, sections=sections, profile=profile
        ) from None


def _explain(
    error: Any,
    model: type[BaseModel],
    *,
    path: Path | None,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    profile: str | None,
) -> ConfigError:
    """One pydantic error as a ConfigError: unknown key, missing key, wrong type or
    invalid value, with the expected type and an example derived from the field."""
    # Walk the error location through the models: ("placement", "tensor_split", 1) ends at
    # the tensor_split field, item 1. Union member tags ("int", "literal[...]") end the walk.
    walked: list[str] = []
    cls: type[BaseModel] | None = model
    info: FieldInfo | None = None
    annotation: Any = None
    limits: list[Any] = []  # Field(...) constraints of the field itself, e.g. min_length
    unknown: str | None = None
    item = ""
    for part in error["loc"]:
        if isinstance(part, int):
            annotation, limits = _item_type(annotation), []
            item = f" (item {part + 1})"
        elif cls is not None and part in cls.model_fields:
            info = cls.model_fields[part]
            annotation, limits = info.annotation, list(info.metadata)
            walked.append(part)
            cls = _model_in(annotation)
        elif cls is not None and error["type"] == "extra_forbidden":
            unknown = part
            break
        elif _is_dict(annotation):
            annotation, limits = _item_type(annotation), []
            walked.append(part)
        else:
            break

    section = ".".join(walked)
    if unknown is not None:
        return _unknown_key(
            unknown, section, table=table, sections=sections, path=path, profile=profile
        )
    where = {"path": path, "profile": profile, "key": section or None}

    leaf = walked[-1] if walked else ""
    parent_table = ".".join(filter(None, [table, *walked[:-1]]))
    value = error.get("input")
    if error["type"] == "missing":
        return ConfigError(
            f"missing required key '{leaf}'",
            hint=_example(info, leaf, parent_table),
            **where,
        )
    expected = _describe(annotation, limits)
    bad_choice = error["type"] == "literal_error" and isinstance(value, str)
    if error["type"] in _RANGE_ERRORS or bad_choice:
        message = f"invalid value {_toml(value)}{item}: expected {expected}"
    else:
        message = f"wrong type: expected {expected}, got {_got(value)}{item}"
    if _model_in(annotation) or _is_dict(annotation):
        hint = f"write it as a table: [{'.'.join(filter(None, [table, *walked]))}]"
    elif _strip_none(annotation) is str and isinstance(value, int | float | bool):
        hint = f'quote it: {walked[-1]} = "{_toml(value)}"'
    else:
        hint = _example(info, leaf, parent_table)
    return ConfigError(message, hint=hint, **where)


def _unknown_key(
    key: str,
    section: str,
    *,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    path: Path | None,
    profile: str | None,
) -> ConfigError:
    """An unknown key, with the closest known one, or the table where it belongs."""
    here = set(sections[section].model_fields) - {"id"} if section in sections else set()
    elsewhere = {
        name: sub
        for sub, cls in sections.items()
        if sub != section
        for name in cls.model_fields
        if name != "id"
    }
    guess = key.lower().replace("-", "_")
    if _SYNONYMS.get(guess) in here | set(elsewhere):
        guess = _SYNONYMS[guess]

    def table_of(sub: str) -> str:
        name = ".".join(filter(None, [table, sub]))
        return f"[{name}]" if name else "the top level"

    hint: str
    if guess in here:
        hint = f"did you mean '{guess}'?"
    elif guess in elsewhere and guess == key:
        home = elsewhere[guess]
        if home:
            hint = f"'{key}' is a {home} setting: put it under {table_of(home)}"
        elif table:
            hint = f"'{key}' is a profile setting: put it under {table_of(home)}"
        else:
            hint = f"'{key}' is a top-level setting: move it above the first [table]"
    elif guess in elsewhere:
        hint = f"did you mean '{guess}'? put it under {table_of(elsewhere[guess])}"
    elif close := difflib.get_close_matches(guess, sorted(here), n=1):
        hint = f"did you mean '{close[0]}'?"
    elif close := difflib.get_close_matches(guess, sorted(elsewhere), n=1):
        hint = f"did you mean '{close[0]}'? put it under {table_of(elsewhere[close[0]])}"
    else:
        hint = f"known keys in {table_of(section)}: {', '.join(sorted(here))}"
    full_key = ".".join(filter(None, [section, key]))
    return ConfigError(f"unknown key '{key}'", path=path, profile=profile, key=full_key, hint=hint)


def _did_you_mean(name: str, known: Sequence[str], *, what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    listing = f"known {what}: {', '.join(known)}" if known else f"no {what} are defined"
    return f"did you mean '{close[0]}'? {listing}" if close else listing


def _example(info: FieldInfo | None, leaf: str, parent_table: str) -> str | None:
    """'e.g. [models.glm.sampling] top_p = 0.95', from the field's declared example."""
    if info is None or not info.examples:
        return None
    prefix = f"[{parent_table}] " if parent_table else ""
    return f"e.g. {prefix}{leaf} = {_toml(info.examples[0])}"


# Type descriptions for messages, derived from the annotations.

_NAMES: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "true/false values"),
    Path: ("a path string", "path strings"),
}


def _describe(annotation: Any, limits: Sequence[Any] = (), *, plural: bool = False) -> str:
    """`Annotated[float, Field(ge=0, le=1)] | None` -> 'a number between 0 and 1'.

    `limits` are constraints declared on the field itself (Field(min_length=1)).
    """
    annotation, inner = _unwrap(annotation)
    limits = [*limits, *inner]
    origin = get_origin(annotation)
    nonempty = any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in limits)
    if origin in (Union, UnionType):
        parts = []
        for arg in get_args(annotation):
            if get_origin(arg) is Literal:  # 'an integer, 'auto' or 'all'', not nested "or"s
                parts.extend(repr(v) for v in get_args(arg))
            elif arg is not NoneType:
                parts.append(_describe(arg, limits, plural=plural))
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        values = [repr(v) for v in get_args(annotation)]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    if origin is list:
        noun = "lists" if plural else "a list"
        noun = "a non-empty list" if nonempty and not plural else noun
        return f"{noun} of {_describe(get_args(annotation)[0], plural=True)}"
    if origin is dict:
        noun = "tables" if plural else "a table"
        return f"{noun} of {_describe(get_args(annotation)[1], plural=True)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "tables" if plural else "a table"
    singular, many = _NAMES.get(annotation, (getattr(annotation, "__name__", "?"), "values"))
    text = many if plural else singular
    if nonempty and annotation is str:
        text = "non-empty strings" if plural else "a non-empty string"
    return f"{text} {_range(limits)}".rstrip()


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip Annotated, collecting its constraint objects (annotated_types Ge, Le, ...)."""
    limits: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for meta in extra:
            limits.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return annotation, limits


def _range(limits: list[Any]) -> str:
    bounds = {}
    for meta in limits:
        for name in ("gt", "ge", "lt", "le"):
            if hasattr(meta, name):
                bounds[name] = getattr(meta, name)
    if "ge" in bounds and "le" in bounds:
        return f"between {bounds['ge']} and {bounds['le']}"
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{symbols[name]} {value}" for name, value in bounds.items())


def _strip_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1:
            return _unwrap(args[0])[0]
    return _unwrap(annotation)[0]


def _item_type(annotation: Any) -> Any:
    """The element type of list[X] / the value type of dict[str, X] (Optional stripped)."""
    inner = _strip_none(annotation)
    args = get_args(inner)
    return args[-1] if args else Any


def _is_dict(annotation: Any) -> bool:
    return get_origin(_strip_none(annotation)) is dict


def _model_in(annotation: Any) -> type[BaseModel] | None:
    inner = _strip_none(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _got(value: Any) -> str:
    """What the user wrote, named in TOML terms: 'a string "big"'."""
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, dict):
        return "a table"
    else:
        kind = "a date/time"
    return f"{kind} {_toml(value)}"


def _toml(value: Any) -> str:
    """A value written the way it would appear in herd.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)

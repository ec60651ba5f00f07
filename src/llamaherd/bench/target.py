"""What a benchmark talks to: a herd profile through the gateway, or any OpenAI-compatible
endpoint; and the conditions a result was measured under (hardware, build, argv).

Both kinds are a `Target` with an OpenAI base URL, so speed and HumanEval+ run the very
same requests against a local profile and against a hosted model. A third kind asks
Claude Code's CLI instead (bench/claude_code.py): the same prompts, no HTTP of herd's own.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from llamaherd import __version__, control
from llamaherd.config import BenchSettings, Config, Profile
from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp import binaries
from llamaherd.schema import Gpu, SwitchFailed


@dataclass(frozen=True)
class ClaudeCode:
    """How to run Claude Code for `--via claude-code`: its binary and the environment it
    runs with (the user's own: their login, config dir, ANTHROPIC_BASE_URL if set)."""

    binary: Path
    environ: dict[str, str]
    version: str | None


@dataclass
class Target:
    model: str
    """What requests name in `model`: the profile id, or the endpoint's model name."""
    label: str
    base_url: str
    """The OpenAI API root, e.g. http://127.0.0.1:8080/v1 (requests go to /chat/completions)."""
    api_key: str | None = None
    endpoint: str | None = None
    """None for herd's own profiles; the URL for --endpoint (stored with the results)."""
    profile: Profile | None = None
    bench: BenchSettings = field(default_factory=BenchSettings)
    claude_code: ClaudeCode | None = None
    """Set for `--via claude-code`: each request is one `claude -p` run, not HTTP."""

    @property
    def is_herd(self) -> bool:
        """A llama-server behind herd's gateway: llama.cpp's own request fields are safe
        (ignore_eos, cache_prompt); an endpoint may refuse fields it does not know."""
        return self.endpoint is None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def herd_targets(config: Config, ids: tuple[str, ...] | list[str], every: bool) -> list[Target]:
    """The profiles to benchmark: those named, all of them, or the one running now."""
    if ids and every:
        raise UsageError("give profile ids or ask for every profile (--all, --local), not both")
    if every:
        profiles = list(config.models.values())
    elif ids:
        profiles = [config.resolve(name) for name in ids]
    else:
        client = control.connect(config)
        status = client.status() if client.alive() else None
        if status is None or status.state != "ready" or status.model is None:
            raise UsageError("which model? give profile ids, --all, or --endpoint URL --model NAME")
        profiles = [config.resolve(status.model)]
    key = os.environ.get("HERD_API_KEY") or config.server.api_key
    return [
        Target(
            model=p.id,
            label=p.name,
            base_url=f"{config.server.public_url}/v1",
            api_key=key,
            profile=p,
            bench=p.bench,
        )
        for p in profiles
    ]


def endpoint_target(url: str, model: str | None, key_env: str | None) -> Target:
    """Any OpenAI-compatible endpoint: URL is its API root (what OpenAI SDKs call base_url)."""
    if not model:
        raise UsageError("--endpoint needs --model NAME (the model the endpoint should run)")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {url!r}: expected an http(s) URL such as https://host/v1")
    key = None
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise UsageError(f"--api-key-env {key_env}: that environment variable is not set")
    return Target(model=model, label=model, base_url=url.rstrip("/"), api_key=key, endpoint=url)


def prepare(config: Config | None, target: Target) -> dict[str, Any]:
    """Make sure the target serves (a profile is switched to, starting the daemon if
    needed) and describe what it runs on: the `environment` stored with its results."""
    env = _host()
    if target.claude_code:
        env["claude_code"] = target.claude_code.version
    if not target.is_herd or config is None:
        return {**env, "endpoint": target.endpoint, "gpus": None, "llama_cpp": None, "argv": None}
    answer = control.up(config, target.model)
    if isinstance(answer, SwitchFailed):
        raise HerdError(f"{target.model} did not start: {answer.error}")
    client = control.connect(config)
    status = client.status()
    loaded = next((m for m in status.loaded if m.model == target.model), None)
    gpus: list[Gpu] = []
    with contextlib.suppress(HerdError):  # an older daemon without /system: no GPU names
        gpus = client.system().gpus
    server = status.daemon.llama_server
    return {
        **env,
        "endpoint": None,
        "gpus": [{"name": g.name, "memory_total": g.memory_total} for g in gpus],
        "gpu_driver": _nvidia_driver(),
        "llama_server": server,
        "llama_cpp": binaries.version(Path(server)) if server else None,
        "argv": loaded.argv if loaded else None,
        "server_url": loaded.url if loaded else None,
    }


@contextlib.contextmanager
def restoring(config: Config | None) -> Iterator[None]:
    """Benchmarking switches models; afterwards the model that was serving before (if
    any) is switched back, so `herd bench` leaves the machine as it found it."""
    client = control.connect(config) if config else None
    before = client.status() if client and client.alive() else None
    try:
        yield
    finally:
        model = before.model if before and before.state == "ready" else None
        if client and model and client.alive() and client.status().model != model:
            with contextlib.suppress(HerdError):
                client.switch(model)


def _host() -> dict[str, Any]:
    return {
        "herd_version": __version__,
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_cores": psutil.cpu_count(logical=False),
        "cpu_threads": psutil.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version, or None without one (NVML via nvidia-ml-py)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver: a CPU-only machine
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def describe(env: dict[str, Any]) -> str:
    """One line for tables: 'RTX 4090 + RTX 5070 Ti, llama.cpp b7100' or the CPU."""
    gpus = env.get("gpus")
    if env.get("claude_code"):
        where = f"Claude Code {env['claude_code']}"
    elif env.get("endpoint"):
        where = env["endpoint"]
    elif gpus:
        where = " + ".join(str(g.get("name")) for g in gpus)
    else:
        where = f"{env.get('cpu') or 'CPU'} ({env.get('cpu_threads')} threads)"
    build = env.get("llama_cpp")
    return f"{where}, llama.cpp {build.removeprefix('version: ')}" if build else where

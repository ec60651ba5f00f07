"""How a profile becomes a running llama-server: a native process or a container.

- `process`: one llama-server process (log capture, readiness, stop, stale records);
- `native`: llama-server as the daemon's child, its command line built by `argv`;
- `docker`: llama-server in a container (`docker run` attached); `compose`: compose files;
- `rpc`: llama.cpp RPC workers that extend one model across machines.

The supervisor only sees the `Runtime` protocol and the `Server` handle a start returns,
so switching, crash restarts and the gateway work the same for every runtime (and for
the tests' in-process fake).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llamaherd.config import Config, Profile
    from llamaherd.runtime.loading import LoadProgress


class Server(Protocol):
    """A started llama-server (or a stand-in): what the supervisor, the gateway and the
    samplers use. `process.ServerProcess` is the real one."""

    argv: list[str]
    port: int
    log_path: Path
    started_at: float
    line_count: int  # log lines captured since start
    # The key llama-server was started with (LLAMA_API_KEY): its port refuses callers
    # without it, so only herd (the gateway, the samplers) reaches it. None: no key.
    api_key: str | None
    loading: LoadProgress  # how far the model load got, from its log (runtime/loading.py)

    @property
    def pid(self) -> int: ...

    @property
    def url(self) -> str: ...

    @property
    def returncode(self) -> int | None: ...

    def log_tail(self, lines: int = 20, since: int | None = None) -> list[str]: ...

    async def wait_ready(
        self, timeout: float, progress: Callable[[float], None] | None = None
    ) -> None:
        """Return once it serves; RuntimeError with the reason if it exits or times out."""
        ...

    async def wait(self) -> int:
        """Wait for it to exit on its own; its exit code."""
        ...

    async def stop(self, grace: float) -> int | None:
        """Stop it (forcibly after `grace` seconds); its exit code."""
        ...


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header that lets herd itself call a llama-server started with `api_key`."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def new_server_key() -> str:
    """A fresh key for one llama-server start; passed through the environment, never argv."""
    return secrets.token_urlsafe(32)


SERVER_KEY_ENV = "LLAMA_API_KEY"  # llama-server reads its --api-key from here


class Runtime(Protocol):
    def command(self, profile: Profile, port: int) -> list[str]:
        """The command line that serves `profile` on 127.0.0.1:port."""
        ...

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> Server:
        """Start serving; raises OSError when the program cannot be started at all."""
        ...


def pick(config: Config, llama_server: Path, profile: Profile) -> Runtime:
    """The runtime `profile` asks for (config/load.py resolved it from the file's default)."""
    if profile.runtime == "docker":
        from llamaherd.runtime.docker import DockerRuntime

        return DockerRuntime(config.docker, config.models_dir)
    from llamaherd.runtime.native import NativeRuntime

    return NativeRuntime(llama_server)

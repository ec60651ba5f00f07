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

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llamaherd.config import Config, Profile
    from llamaherd.runtime.process import ServerProcess


class Runtime(Protocol):
    def command(self, profile: Profile, port: int) -> list[str]:
        """The command line that serves `profile` on 127.0.0.1:port."""
        ...

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> ServerProcess:
        """Start serving; raises OSError when the program cannot be started at all."""
        ...


def pick(config: Config, llama_server: Path, profile: Profile) -> Runtime:
    """The runtime `profile` asks for (config.py resolved it from the file's default)."""
    if profile.runtime == "docker":
        from llamaherd.runtime.docker import DockerRuntime

        return DockerRuntime(config.docker, config.models_dir)
    from llamaherd.runtime.native import NativeRuntime

    return NativeRuntime(llama_server)

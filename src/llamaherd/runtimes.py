"""How a profile becomes a running llama-server: a native process or a container.

The supervisor only sees this interface; either way it gets a runtime.ServerProcess (log
capture, readiness on /health, stop), so switching, crash restarts and the gateway work
the same for both. The docker runtime lives in docker/runtime.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from llamaherd import runtime
from llamaherd.argv import server_argv, server_env
from llamaherd.config import Config, Profile
from llamaherd.docker.runtime import DockerRuntime


class Runtime(Protocol):
    def command(self, profile: Profile, port: int) -> list[str]:
        """The command line that serves `profile` on 127.0.0.1:port."""
        ...

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> runtime.ServerProcess:
        """Start serving; raises OSError when the program cannot be started at all."""
        ...


class NativeRuntime:
    """llama-server as a child process of the daemon."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def command(self, profile: Profile, port: int) -> list[str]:
        return server_argv(self.binary, profile, host="127.0.0.1", port=port)

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> runtime.ServerProcess:
        return await runtime.start(
            self.command(profile, port),
            env=server_env(profile, os.environ),
            port=port,
            run_dir=run_dir,
            name=profile.id,
        )


def pick(config: Config, llama_server: Path, profile: Profile) -> Runtime:
    """The runtime `profile` asks for (config.py resolved it from the file's default)."""
    if profile.runtime == "docker":
        return DockerRuntime(config.docker, config.models_dir)
    return NativeRuntime(llama_server)

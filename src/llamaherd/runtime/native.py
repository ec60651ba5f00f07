"""The native runtime: llama-server as a child process of the daemon."""

from __future__ import annotations

import os
from pathlib import Path

from llamaherd.config import Profile
from llamaherd.runtime import process
from llamaherd.runtime.argv import server_argv, server_env


class NativeRuntime:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def command(self, profile: Profile, port: int) -> list[str]:
        return server_argv(self.binary, profile, host="127.0.0.1", port=port)

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> process.ServerProcess:
        return await process.start(
            self.command(profile, port),
            env=server_env(profile, os.environ),
            port=port,
            run_dir=run_dir,
            name=profile.id,
        )

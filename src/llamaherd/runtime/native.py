"""The native runtime: llama-server as a child process of the daemon."""

from __future__ import annotations

import os
from pathlib import Path

from llamaherd.config import Profile
from llamaherd.runtime import SERVER_KEY_ENV, new_server_key, process
from llamaherd.runtime.argv import server_argv, server_env


class NativeRuntime:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def command(self, profile: Profile, port: int) -> list[str]:
        return server_argv(self.binary, profile, host="127.0.0.1", port=port)

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> process.ServerProcess:
        key = new_server_key()
        return await process.start(
            self.command(profile, port),
            # After the profile's env: herd's key is the one llama-server must use.
            env={**server_env(profile, os.environ), SERVER_KEY_ENV: key},
            port=port,
            run_dir=run_dir,
            name=profile.id,
            api_key=key,
        )

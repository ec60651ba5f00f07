"""Starting the daemon in the background for `herd up` (a client's job: it runs `herd serve`
detached and waits until its API answers)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

from llamaherd import paths
from llamaherd.client import DaemonClient
from llamaherd.config import Config
from llamaherd.errors import HerdError


def start_background(config: Config, *, timeout: float = 30.0) -> DaemonClient:
    """Start `herd serve` detached (unless one runs) and return a client once it answers."""
    client = DaemonClient(config.server.api_url, config.server.api_key)
    if client.alive():
        _check_same_config(client, config)
        return client
    state_dir = paths.writable_state_dir()
    log_path = state_dir / "daemon.log"
    command = [sys.executable, "-m", "llamaherd"]
    if config.path:
        command += ["--config", str(config.path)]
    command.append("serve")
    with log_path.open("a") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the terminal that ran `herd up`
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.alive():
            return client
        if process.poll() is not None:
            raise HerdError(f"the daemon exited at start: {_last_line(log_path)} (log: {log_path})")
        time.sleep(0.1)
    process.kill()
    raise HerdError(f"the daemon did not answer within {timeout:g}s (log: {log_path})")


def _check_same_config(client: DaemonClient, config: Config) -> None:
    running = client.status().daemon.config
    if config.path and running and Path(running) != Path(config.path):
        raise HerdError(
            f"a daemon is already running with {running}, not {config.path}; "
            "stop it with `herd down --all` or use that config"
        )


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"

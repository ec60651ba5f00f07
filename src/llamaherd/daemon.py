"""The daemon process: owns the supervisor and serves the management API.

`serve()` runs it in the foreground (``herd serve``); `start_background()` launches it as
a detached process (``herd up``) and waits until its API answers. One daemon per state
dir: a lock file held for the daemon's lifetime makes a second one refuse to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import uvicorn

from llamaherd import binaries, paths, runtime
from llamaherd.api import create_app
from llamaherd.client import DaemonClient
from llamaherd.config import Config
from llamaherd.errors import HerdError
from llamaherd.supervisor import Supervisor

RECORD = "daemon.json"


def api_url(config: Config) -> str:
    host = config.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{config.server.api_port}"


def running_record(state_dir: Path | None = None) -> dict | None:
    """The record the running daemon wrote (pid, API url, config), if its pid is alive."""
    path = (state_dir or paths.state_dir()) / RECORD
    try:
        record = json.loads(path.read_text())
        os.kill(record["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return record


def _acquire_lock(state_dir: Path):
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "daemon.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        record = running_record(state_dir) or {}
        raise HerdError(
            f"a herd daemon is already running (pid {record.get('pid', '?')}, "
            f"API {record.get('api_url', '?')}); stop it with `herd down --all`"
        ) from None
    return handle


def _check_port_free(host: str, port: int) -> None:
    if not runtime.port_free(host, port):
        raise HerdError(
            f"management API port {host}:{port} is taken; "
            "stop what uses it or set [server] api_port in herd.toml"
        )


def serve(config: Config, *, model: str | None = None) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM or POST /shutdown."""
    state_dir = paths.state_dir()
    lock = _acquire_lock(state_dir)
    try:
        _check_port_free(config.server.host, config.server.api_port)
        llama_server = binaries.find_llama_server(config.llama_server).path
        reaped = runtime.reap_stale(state_dir)
        if reaped:
            print(f"stopped {len(reaped)} llama-server(s) left by a previous daemon: {reaped}")
        asyncio.run(_serve(config, llama_server, state_dir, model))
    finally:
        (state_dir / RECORD).unlink(missing_ok=True)
        lock.close()


async def _serve(config: Config, llama_server: Path, state_dir: Path, model: str | None) -> None:
    supervisor = Supervisor(config, llama_server, state_dir)
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        assert server is not None
        server.should_exit = True

    app = create_app(supervisor, on_shutdown=shutdown)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.server.host, port=config.server.api_port, log_level="warning"
        )
    )
    record = {
        "pid": os.getpid(),
        "api_url": api_url(config),
        "config": str(config.path) if config.path else None,
        "started_at": time.time(),
    }
    (state_dir / RECORD).write_text(json.dumps(record))
    if model:
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(supervisor.switch(model))
        )
    try:
        await server.serve()
    finally:
        await supervisor.stop()


def start_background(config: Config, *, timeout: float = 30.0) -> DaemonClient:
    """Start `herd serve` detached (unless one runs) and return a client once it answers."""
    client = DaemonClient(api_url(config), config.server.api_key)
    if client.alive():
        _check_same_config(client, config)
        return client
    state_dir = paths.state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
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
    running = client.status()["daemon"].get("config")
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

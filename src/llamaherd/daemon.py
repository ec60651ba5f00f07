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
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from llamaherd import binaries, paths, runtime
from llamaherd.api import create_app
from llamaherd.client import DaemonClient
from llamaherd.config import Config, load_config
from llamaherd.errors import ConfigError, HerdError
from llamaherd.gateway import Gateway
from llamaherd.metrics import Metrics
from llamaherd.monitor import Sampler
from llamaherd.supervisor import Supervisor

RECORD = "daemon.json"


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


def _bind(host: str, port: int, key: str) -> socket.socket:
    """Bind a listening socket ourselves, so a taken port is a clear error, not a traceback."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listener says TCP; without it every response waited ~40 ms for Nagle.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise HerdError(
            f"{host}:{port} is taken ({error.strerror}); stop what uses it "
            f"or set [server] {key} in herd.toml (or ${'HERD_' + key.upper()})"
        ) from None
    sock.listen(2048)
    return sock


def serve(config: Config, *, model: str | None = None) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM or POST /shutdown."""
    state_dir = paths.state_dir()
    lock = _acquire_lock(state_dir)
    sockets: list[socket.socket] = []
    try:
        # A config whose models all run in containers needs no llama-server on the host.
        all_docker = config.models and all(p.runtime == "docker" for p in config.models.values())
        llama_server = (
            Path("llama-server")
            if all_docker
            else binaries.find_llama_server(config.llama_server).path
        )
        host = config.server.host
        sockets = [
            _bind(host, config.server.port, "port"),
            _bind(host, config.server.api_port, "api_port"),
        ]
        reaped = runtime.reap_stale(state_dir)
        if reaped:
            print(f"stopped {len(reaped)} llama-server(s) left by a previous daemon: {reaped}")
        _run_loop(_serve(config, llama_server, state_dir, sockets, model))
    finally:
        for sock in sockets:
            sock.close()
        (state_dir / RECORD).unlink(missing_ok=True)
        lock.close()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon on uvloop where it is installed (Linux, macOS): its event loop costs
    the gateway less per request and per relayed chunk than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(
    config: Config,
    llama_server: Path,
    state_dir: Path,
    sockets: list[socket.socket],
    model: str | None,
) -> None:
    supervisor = Supervisor(config, llama_server, state_dir)
    supervisor.events.listen(_log_event)
    reloader = ConfigReloader(supervisor)
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        assert server is not None
        server.should_exit = True

    # For the samplers and metrics: llama-server's /slots and /metrics, once a second.
    http = httpx.AsyncClient(timeout=10.0)
    metrics = Metrics(supervisor, http)
    sampler = Sampler(supervisor, http)  # GPUs, host, servers once a second: GET /system
    management = create_app(
        supervisor, metrics, on_shutdown=shutdown, on_reload=reloader.reload, sampler=sampler
    )
    gateway = Gateway(supervisor, metrics)
    public_port = config.server.port

    # One uvicorn server on both sockets; each request goes to the app of its port.
    async def app(scope, receive, send) -> None:
        if scope["type"] != "lifespan" and scope["server"][1] == public_port:
            await gateway(scope, receive, send)
        else:
            await management(scope, receive, send)

    # No Server header of uvicorn's own: the gateway passes llama-server's through.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False))
    # A client leaving mid-stream makes asyncio warn once per late write; that is expected.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    record = {
        "pid": os.getpid(),
        "api_url": config.server.api_url,
        "url": config.server.public_url,
        "config": str(config.path) if config.path else None,
        "started_at": time.time(),
    }
    (state_dir / RECORD).write_text(json.dumps(record))
    supervisor.start_background_work(first_model=model)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_quietly)
    watcher = asyncio.create_task(reloader.watch_forever())
    sampling = asyncio.create_task(sampler.run())
    try:
        await server.serve(sockets=sockets)
    finally:
        watcher.cancel()
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        await supervisor.close()
        await gateway.close()
        await http.aclose()


def _log_event(event: dict) -> None:
    """One line per event in the daemon's output (daemon.log when started by `herd up`)."""
    if event["type"] == "loading":
        return  # once a second while loading: noise in a log file
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "at", "log_tail"))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"]))
    print(f"{stamp} {event['type']} {details}", flush=True)


class ConfigReloader:
    """Re-reads herd.toml on POST /reload, SIGHUP, or when the file changes on disk.

    A bad file is rejected with its error (published as a `reload` event, and logged)
    and the config in force stays.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.path = supervisor.config.path
        self.mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def reload(self) -> dict:
        if self.path is None:
            raise ConfigError("the daemon was started without a config file to re-read")
        self.mtime = self._mtime()
        try:
            config = load_config(self.path)
        except ConfigError as error:
            self.supervisor.events.publish("reload", ok=False, error=str(error))
            print(f"reload rejected, the old config stays: {error}", flush=True)
            raise
        answer = self.supervisor.apply_config(config)
        self.supervisor.events.publish("reload", **answer)
        return answer

    def reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):
            self.reload()

    async def watch_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._mtime() != self.mtime:
                self.reload_quietly()


def start_background(config: Config, *, timeout: float = 30.0) -> DaemonClient:
    """Start `herd serve` detached (unless one runs) and return a client once it answers."""
    client = DaemonClient(config.server.api_url, config.server.api_key)
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

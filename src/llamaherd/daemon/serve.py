"""The daemon process (`herd serve`): binds both ports, owns the supervisor, serves the
gateway and the management API on one uvicorn server until SIGINT/SIGTERM or
POST /shutdown. One daemon per state dir (daemon/record.py holds the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from llamaherd import paths
from llamaherd.config import Config, ServerSettings
from llamaherd.daemon.activity import DB_NAME, ActivityLog
from llamaherd.daemon.api import create_app
from llamaherd.daemon.gateway import Gateway
from llamaherd.daemon.guard import Guard
from llamaherd.daemon.limits import LimitedHttp, raise_open_file_limit
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.record import RECORD, acquire_lock
from llamaherd.daemon.reload import ConfigReloader
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.errors import HerdError
from llamaherd.llamacpp import binaries
from llamaherd.monitor import Sampler
from llamaherd.runtime import process

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)
# Events that say something went wrong (besides any with ok=false or a failed state).
TROUBLE_EVENTS = {"crash", "restart_skipped"}


def bind_listener(host: str, port: int, key: str) -> socket.socket:
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
    # The daemon logs through `logging`: one line each, with its level, into daemon.log.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per sampler request
    state_dir = paths.writable_state_dir()
    lock = acquire_lock(state_dir)
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
            bind_listener(host, config.server.port, "port"),
            bind_listener(host, config.server.api_port, "api_port"),
        ]
        reaped = process.reap_stale(state_dir)
        if reaped:
            log.warning(
                "stopped %d llama-server(s) left by a previous daemon: %s", len(reaped), reaped
            )
        # Only now: a port that turned out to be taken must not be announced first.
        print(f"herd daemon: management API on {config.server.api_url}", file=sys.stderr)
        _run_loop(_serve(config, llama_server, state_dir, sockets, model))
    finally:
        for sock in sockets:
            sock.close()
        (state_dir / RECORD).unlink(missing_ok=True)
        lock.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises SIGINT/SIGTERM once serve() returns, which kills the
        # daemon before it stops its models and removes its records; _serve handles them.
        yield


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
    public_port = config.server.port

    def settings() -> ServerSettings:
        return supervisor.config.server

    activity = ActivityLog(state_dir / DB_NAME, settings)  # a record per gateway request
    management = create_app(
        supervisor,
        metrics,
        on_shutdown=shutdown,
        on_reload=reloader.reload,
        sampler=sampler,
        activity=activity,
    )
    # Host/Origin checks and herd's own CORS on both ports (daemon/guard.py).
    gateway = Gateway(supervisor, metrics, activity)
    public = Guard(gateway, settings, config.server.host, openai_errors=True)
    private = Guard(management, settings, config.server.host)

    # One uvicorn server on both sockets; each request goes to the app of its port.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and scope["server"][1] == public_port:
            await public(scope, receive, send)
        else:
            await private(scope, receive, send)

    # No Server header of uvicorn's own: the gateway passes llama-server's through.
    # LimitedHttp: header size/count limits, header and body timeouts, a connection cap.
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            server_header=False,
            http=LimitedHttp.factory(settings),
        )
    )
    limit = raise_open_file_limit()
    if limit and limit[1] != limit[0]:
        log.info("open-file limit raised from %d to %d", *limit)
    # A client leaving mid-stream makes asyncio warn once per late write; that is expected.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_quietly)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, systemd, kill
        loop.add_signal_handler(stop_signal, shutdown)
    record = {
        "pid": os.getpid(),
        "api_url": config.server.api_url,
        "url": config.server.public_url,
        "config": str(config.path) if config.path else None,
        "started_at": time.time(),
    }
    (state_dir / RECORD).write_text(json.dumps(record))
    supervisor.start_background_work(first_model=model)
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
        await asyncio.to_thread(activity.close)  # what is queued is written


def _log_event(event: dict) -> None:
    """One line per event in the daemon's log (daemon.log when started by `herd up`); the
    log line's time is the event's, as listeners are called when it is published."""
    if event["type"] == "loading":
        return  # once a second while loading: noise in a log file
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "at", "log_tail"))
    trouble = (
        event["type"] in TROUBLE_EVENTS
        or event.get("ok") is False
        or event.get("state") == "failed"
    )
    log.log(logging.WARNING if trouble else logging.INFO, "%s %s", event["type"], details)

"""Run one llama-server process: start it, capture its log, wait for readiness, stop it.

The native runtime is a child process of the daemon. It is started in its own process
group (so stopping it reaches everything it spawned) and with PR_SET_PDEATHSIG (so it
dies with the daemon even when the daemon is SIGKILLed). Each start is recorded in the
state dir, so a daemon that was killed can find and stop servers left behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TextIO

import httpx
import psutil

from llamaherd.runtime.loading import LoadProgress

LOG_TAIL_LINES = 2000
MAX_LINE = 65536  # bytes; a longer log line is kept as several
LOG_RETRY_S = 2.0  # how often a log file that failed (a full disk) is tried again
# llama-server ignores a first SIGTERM while it generates (it waits for the request);
# a second one makes it exit at once. This long after the first comes the second.
SECOND_SIGTERM_S = 1.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def _find_prctl() -> Callable[..., int] | None:
    """prctl(2), looked up in the daemon: the child of a threaded process must not dlopen
    between fork and exec (a lock another thread held stays held forever)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_prctl = _find_prctl()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now, for llama-server's internal listener."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL us when the daemon dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the daemon died before prctl took effect
        os._exit(1)


class _LogFile:
    """A run's log file, appended line by line. Writing it never fails the caller: on an
    error (a full disk) the line is dropped, `report` is called once, and the file is
    opened again at most every LOG_RETRY_S seconds, so lines reach it once there is room."""

    def __init__(self, path: Path, report: Callable[[str], None]) -> None:
        self.path = path
        self._report = report
        self._file: TextIO | None = None
        self._failed_at: float | None = None

    def write(self, line: str) -> None:
        if self._failed_at is not None and time.monotonic() - self._failed_at < LOG_RETRY_S:
            return
        try:
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8", errors="replace")
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as error:
            if self._file is not None:
                with contextlib.suppress(OSError):  # the buffered line fails again
                    self._file.close()
                self._file = None
            if self._failed_at is None:
                self._report(
                    f"herd: cannot write the log file {self.path}: {error.strerror or error}; "
                    f"the last {LOG_TAIL_LINES} lines stay in memory (herd logs), "
                    f"writing is tried again every {LOG_RETRY_S:g}s"
                )
            self._failed_at = time.monotonic()
        else:
            self._failed_at = None

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class ServerProcess:
    """One running llama-server and its log."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        *,
        argv: list[str],
        port: int,
        log_path: Path,
        record_path: Path,
        api_key: str | None = None,
    ) -> None:
        self.process = process
        self.api_key = api_key
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.record_path = record_path
        self.started_at = time.time()
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.line_count = 0  # lines captured since start; lets `herd logs -f` ask for news
        self.loading = LoadProgress()
        # Run first by stop(grace): the docker runtime stops and removes its container here.
        self.before_stop: Callable[[float], Awaitable[None]] | None = None
        self._log = _LogFile(log_path, self._report_log_error)
        self._log.write("$ " + " ".join(argv))
        self._reader = asyncio.create_task(self._capture())

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the process to exit; its exit code."""
        return await self.process.wait()

    def _add_line(self, line: str) -> None:
        self.tail.append(line)
        self.line_count += 1
        if self.loading.fraction < 1:
            self.loading.take(line)

    def _report_log_error(self, message: str) -> None:
        log.warning("%s", message)
        self._add_line(message)

    async def _capture(self) -> None:
        """Copy stdout+stderr to the in-memory tail and the per-run log file.

        The pipe is drained whatever happens to the file: a reader that stopped would
        leave llama-server blocked on its next write to a full pipe."""
        stdout = self.process.stdout
        assert stdout is not None
        # Lines are split here, not by readline(), which fails on a line over 64 KiB (a
        # verbose prompt dump); a longer line comes out in pieces of at most MAX_LINE.
        pending = b""
        try:
            while chunk := await stdout.read(MAX_LINE):
                *lines, pending = (pending + chunk).split(b"\n")
                while len(pending) >= MAX_LINE:
                    lines.append(pending[:MAX_LINE])
                    pending = pending[MAX_LINE:]
                for raw in lines:
                    self._take(raw)
                if pending.endswith(b".") and self.loading.fraction < 1:
                    self.loading.partial(pending.decode("latin-1"))  # the tensor dots so far
            if pending:
                self._take(pending)
        finally:
            self._log.close()

    def _take(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        self._add_line(line)
        self._log.write(line)

    def log_tail(self, lines: int = 20, since: int | None = None) -> list[str]:
        """The last `lines` lines; with `since`, only lines numbered after it (1-based)."""
        if since is not None:
            lines = min(lines, max(0, self.line_count - since))
        return list(self.tail)[-lines:] if lines > 0 else []

    async def wait_ready(
        self, timeout: float, progress: Callable[[float], None] | None = None
    ) -> None:
        """Poll /health until it answers 200 (llama-server says 503 while loading).

        `progress(elapsed_s)` is called about once a second while waiting. Raises
        RuntimeError with the reason when the process exits or time runs out.
        """

        async def exit_code() -> int | None:
            if self.returncode is not None:
                await self._drain()  # the log's last lines say why
            return self.returncode

        await wait_healthy(self.url, exit_code, timeout, progress)

    async def _drain(self) -> None:
        """Let the log reader catch up with what the process printed before it ended."""
        await asyncio.wait({self._reader}, timeout=2.0)  # never raises the reader's error

    async def stop(self, grace: float) -> int | None:
        """SIGTERM the process group, a second SIGTERM after SECOND_SIGTERM_S (llama-server
        waits for a running generation after the first), SIGKILL after `grace` seconds;
        return the exit code."""
        if self.before_stop:
            await self.before_stop(grace)
        if self.returncode is None:
            deadline = time.monotonic() + grace
            _signal_group(self.pid, signal.SIGTERM)
            if not await self._exits_within(min(SECOND_SIGTERM_S, grace)):
                _signal_group(self.pid, signal.SIGTERM)
                if not await self._exits_within(deadline - time.monotonic()):
                    _signal_group(self.pid, signal.SIGKILL)
                    await self.process.wait()
        else:
            # The leader is gone; make sure nothing it spawned lingers in its group.
            _signal_group(self.pid, signal.SIGKILL)
        await self._drain()
        self.record_path.unlink(missing_ok=True)
        return self.returncode

    async def _exits_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.process.wait(), max(0.0, seconds))
        except TimeoutError:
            return False
        return True


async def wait_healthy(
    url: str,
    exit_code: Callable[[], Awaitable[int | None]],
    timeout: float,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Poll `url`/health until it answers 200; RuntimeError when the server exits
    (`exit_code()` is not None) or `timeout` seconds pass. Shared by every Server."""
    began = time.monotonic()
    last_report = began
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            code = await exit_code()
            if code is not None:
                raise RuntimeError(f"llama-server exited with code {code}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            now = time.monotonic()
            if now - began > timeout:
                raise RuntimeError(f"llama-server not ready after {timeout:g}s")
            if progress and now - last_report >= 1.0:
                last_report = now
                progress(now - began)
            await asyncio.sleep(0.1)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def start(
    argv: list[str],
    *,
    env: Mapping[str, str],
    port: int,
    run_dir: Path,
    name: str,
    cleanup: list[str] | None = None,
    api_key: str | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start llama-server; its log goes to `log_path`, by default
    run_dir/logs/<name>-<time>.log (argv first).

    `cleanup` is a command that removes what would outlive the process if the daemon died
    (the docker runtime's container); reap_stale runs it. `api_key` is the key `env`
    gives llama-server (kept on the handle for the gateway and the samplers)."""
    logs = run_dir / "logs"
    records = run_dir / "servers"
    logs.mkdir(parents=True, exist_ok=True)
    records.mkdir(parents=True, exist_ok=True)
    log_path = log_path or logs / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    daemon_pid = os.getpid()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
        preexec_fn=lambda: _die_with_parent(daemon_pid),
    )
    record_path = records / f"{process.pid}.json"
    record_path.write_text(
        json.dumps(
            {
                "pid": process.pid,
                "create_time": psutil.Process(process.pid).create_time(),
                "profile": name,
                "port": port,
                "daemon_pid": daemon_pid,
                "cleanup": cleanup,
            }
        )
    )
    return ServerProcess(
        process,
        argv=argv,
        port=port,
        log_path=log_path,
        record_path=record_path,
        api_key=api_key,
    )


def reap_stale(run_dir: Path) -> list[int]:
    """Kill llama-servers a previous daemon recorded but did not stop; return their pids.

    A record is only acted on when the pid still belongs to the same process (same
    creation time), so a recycled pid is never killed.
    """
    killed = []
    for record_path in sorted((run_dir / "servers").glob("*.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        with contextlib.suppress(KeyError, TypeError, psutil.Error):
            process = psutil.Process(record["pid"])
            if abs(process.create_time() - record["create_time"]) < 1.0:
                _signal_group(record["pid"], signal.SIGKILL)
                process.kill()
                killed.append(record["pid"])
        # Whether or not the process was still there (a docker client dies with the
        # daemon, its container does not), remove what it would leave behind.
        if isinstance(record, dict) and record.get("cleanup"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    record["cleanup"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=60,
                    check=False,
                )
        record_path.unlink(missing_ok=True)
    return killed

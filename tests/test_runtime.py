"""Process handling that needs no llama-server: stale-server cleanup and ports."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from llamaherd.daemon import serve
from llamaherd.runtime import process


def record(run_dir: Path, process: subprocess.Popen, create_time: float) -> Path:
    records = run_dir / "servers"
    records.mkdir(parents=True, exist_ok=True)
    path = records / f"{process.pid}.json"
    path.write_text(json.dumps({"pid": process.pid, "create_time": create_time}))
    return path


def test_reap_stale_kills_recorded_server_group(tmp_path: Path) -> None:
    # A stand-in for a llama-server a SIGKILLed daemon left behind, with a child of its own.
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    time.sleep(0.2)
    children = psutil.Process(leader.pid).children()
    path = record(tmp_path, leader, psutil.Process(leader.pid).create_time())

    assert process.reap_stale(tmp_path) == [leader.pid]
    assert leader.wait(timeout=5) != 0
    psutil.wait_procs(children, timeout=5)
    assert not any(child.is_running() for child in children)
    assert not path.exists()


def test_reap_stale_spares_a_recycled_pid(tmp_path: Path) -> None:
    # Same pid, different creation time: it is not the server we started, so it lives.
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        path = record(tmp_path, other, psutil.Process(other.pid).create_time() - 100)
        assert process.reap_stale(tmp_path) == []
        assert other.poll() is None
        assert not path.exists()
    finally:
        other.kill()
        other.wait()


def test_free_port_is_free_and_taken_port_is_not() -> None:
    port = process.free_port()
    assert process.port_free("127.0.0.1", port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not process.port_free("127.0.0.1", port)


def test_daemon_listeners_say_tcp_so_asyncio_disables_nagle() -> None:
    # asyncio sets TCP_NODELAY on accepted connections only when the listener's proto is
    # IPPROTO_TCP; without it every response waited ~40 ms for a delayed ACK.
    sock = serve.bind_listener("127.0.0.1", process.free_port(), "port")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


# A chatty stand-in for llama-server: 300 kB of log (more than a pipe holds), a mark,
# then, once told to go on, a line every 50 ms.
CHATTY = """
import os, sys, time
for i in range(1500):
    print(f"line {i:04d} " + "x" * 200)
print("phase one done", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
for i in range(600):
    print(f"after {i}", flush=True)
    time.sleep(0.05)
"""


async def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def test_log_reader_keeps_draining_when_the_log_file_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_path = tmp_path / "chatty.log"
    log_path.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    go = tmp_path / "go"

    async def scenario() -> None:
        server = await process.start(
            [sys.executable, "-c", CHATTY, str(go)],
            env=os.environ,
            port=0,
            run_dir=tmp_path,
            name="chatty",
            log_path=log_path,
        )
        # Not blocked on a full pipe: everything it printed reached the tail.
        assert await wait_for(lambda: "phase one done" in server.tail, timeout=30)
        assert server.tail[-2].startswith("line 1499")
        errors = [line for line in server.tail if "cannot write the log file" in line]
        assert len(errors) == 1, "reported once, not once per line"
        assert str(log_path) in errors[0] and "No space left" in errors[0]
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == errors

        # Room again: new lines reach the file.
        log_path.unlink()
        log_path.touch()
        go.touch()
        assert await wait_for(lambda: "after" in log_path.read_text(), timeout=10)

        assert await server.stop(5) is not None  # no error of the reader's re-raised
        assert server.returncode is not None
        assert not server.record_path.exists()

    asyncio.run(scenario())


def test_start_does_not_load_libraries_in_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between fork and exec the child of the threaded daemon must not dlopen (a loader
    # lock held by another thread would hang it forever): a child that tries dies here.
    monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kwargs: os._exit(97))

    async def scenario() -> int:
        server = await process.start(
            [sys.executable, "-c", "print('ran')"],
            env=os.environ,
            port=0,
            run_dir=tmp_path,
            name="child",
        )
        code = await server.wait()
        await server.stop(1)
        assert "ran" in server.tail
        return code

    assert asyncio.run(scenario()) == 0


def test_a_line_too_long_for_the_reader_does_not_stop_it(tmp_path: Path) -> None:
    # asyncio refuses lines over 64 KiB; llama-server can print one (a verbose prompt).
    script = "print('x' * 200_000); print('after', flush=True)"

    async def scenario() -> list[str]:
        server = await process.start(
            [sys.executable, "-c", script], env=os.environ, port=0, run_dir=tmp_path, name="long"
        )
        await server.wait()
        await server.stop(1)
        return list(server.tail)

    *pieces, last = asyncio.run(scenario())
    assert "".join(pieces) == "x" * 200_000 and last == "after"
    assert max(len(piece) for piece in pieces) <= process.MAX_LINE

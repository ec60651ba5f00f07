"""Process handling that needs no llama-server: stale-server cleanup and ports."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import psutil

from llamaherd.daemon import server
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
    sock = server.bind_listener("127.0.0.1", process.free_port(), "port")
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

"""RPC workers: `rpc` in a profile, `herd worker`, and a model served across two real
rpc-server workers on loopback ports (herd's own build, GGML_RPC=ON)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import wait_until
from inprocess import herd

from llamaherd import control, doctor
from llamaherd.config import parse_config
from llamaherd.errors import ConfigError
from llamaherd.llamacpp.binaries import RPC_NAMES
from llamaherd.runtime import rpc
from llamaherd.runtime.argv import server_argv
from llamaherd.runtime.process import free_port
from llamaherd.schema import RpcWorker


def rpc_server_beside(llama_server: Path) -> Path:
    for name in RPC_NAMES:
        if (llama_server.parent / name).exists():
            return llama_server.parent / name
    message = f"no rpc-server beside {llama_server}: build with `herd build` (GGML_RPC=ON)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def workers(llama_server: Path):
    """Two rpc-server workers on loopback; yields their endpoints, stops them after."""
    binary = rpc_server_beside(llama_server)
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            rpc.worker_argv(binary, "127.0.0.1", port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        assert wait_until(lambda: all(accepts(p) for p in ports), timeout=20)
        yield [f"127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


# -- config and argv ------------------------------------------------------------------


def profile_toml(rpc_line: str) -> str:
    return f'[models.m]\nfile = "m.gguf"\n{rpc_line}\n'


def test_rpc_workers_become_one_rpc_flag() -> None:
    config = parse_config(
        profile_toml('rpc = ["10.0.0.2:50052", "[fe80::1]:50053"]'), check_files=False
    )
    argv = server_argv(Path("llama-server"), config.models["m"], host="127.0.0.1", port=9)
    assert argv[argv.index("--rpc") + 1] == "10.0.0.2:50052,[fe80::1]:50053"
    assert "--rpc" not in server_argv(
        Path("llama-server"), parse_config(profile_toml(""), check_files=False).models["m"],
        host="127.0.0.1", port=9,
    )  # fmt: skip


@pytest.mark.parametrize("bad", ['rpc = ["10.0.0.2"]', 'rpc = ["h:99999"]', 'rpc = ["a b:1"]'])
def test_bad_worker_address_is_one_config_line(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"\[models.m\] rpc: invalid RPC worker") as error:
        parse_config(profile_toml(bad), Path("herd.toml"), check_files=False)
    assert "herd worker" in str(error.value)


def test_rpc_in_args_is_refused() -> None:
    with pytest.raises(ConfigError, match="rpc = "):
        parse_config(profile_toml('args = ["--rpc", "h:1"]'), check_files=False)


def test_reachability_check_names_the_dead_worker() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        alive = f"127.0.0.1:{listening.getsockname()[1]}"
        dead = f"127.0.0.1:{free_port()}"
        checks = asyncio.run(rpc.check_all([alive, dead]))
    assert [c.reachable for c in checks] == [True, False]
    reason = rpc.unreachable_reason(checks)
    assert reason and dead in reason and alive not in reason and "herd worker" in reason


# -- real workers ---------------------------------------------------------------------


@pytest.mark.server
def test_model_served_across_two_rpc_workers(
    make_herd, workers: list[str], capsys, monkeypatch
) -> None:
    extra = (
        f'\n[models.spread]\nfile = "dense.gguf"\nctx = 2048\nrpc = {workers!r}\n'.replace("'", '"')
        + 'placement = { n_gpu_layers = "all" }\n'
        + 'args = ["-lv", "4"]\n'  # llama-server logs buffers and layers at verbosity 4
    )
    config = make_herd(extra)
    answer = control.up(config, "spread")
    assert answer.ok, answer
    client = control.connect(config)
    status = client.status()
    assert status.rpc == [RpcWorker(endpoint=endpoint, reachable=True) for endpoint in workers]
    assert status.argv and status.argv[status.argv.index("--rpc") + 1] == ",".join(workers)
    code, out, _ = herd(capsys, monkeypatch, "--config", str(config.path), "status")
    assert code == 0 and f"workers  {', '.join(workers)}" in out

    reply = httpx.post(
        f"{config.server.public_url}/v1/chat/completions",
        json={"model": "spread", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=60,
    )
    assert reply.status_code == 200 and reply.json()["choices"]

    lines = client.logs(5000, model="spread").lines
    placement = "\n".join(line for line in lines if "RPC" in line or "layers" in line)
    for endpoint in workers:
        # A worker's buffers are named RPC<its device index>[host:port]; a model buffer
        # there means that worker holds weights.
        assert re.search(rf"RPC\d+\[{re.escape(endpoint)}\] model buffer size", placement), (
            placement
        )
    assert "offloaded 3/3 layers to GPU" in placement


@pytest.mark.server
def test_unreachable_worker_fails_the_switch_before_starting(make_herd) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = make_herd(f'\n[models.lonely]\nfile = "dense.gguf"\nrpc = ["{dead}"]\n')
    answer = control.up(config, "lonely")
    assert not answer.ok
    assert f"RPC worker unreachable: {dead}" in answer.error
    assert answer.log_tail == []  # no llama-server was started


@pytest.mark.server
def test_herd_worker_prints_what_the_coordinator_needs(llama_server: Path, tmp_path) -> None:
    rpc_server_beside(llama_server)
    port = free_port()
    config = tmp_path / "herd.toml"
    config.write_text(f'llama_server = "{llama_server}"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaherd", "--config", str(config), "worker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
        assert f'rpc = ["127.0.0.1:{port}"]' in "".join(lines)
        assert "loopback only" in "".join(lines)
        assert wait_until(lambda: accepts(port), timeout=20)  # rpc-server itself listens
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_doctor_reports_each_worker(tmp_path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        alive = f"127.0.0.1:{listening.getsockname()[1]}"
        config = parse_config(
            profile_toml(f'rpc = ["{alive}", "{dead}"]')
            + f'[models.n]\nfile = "n.gguf"\nrpc = ["{alive}"]\n',
            check_files=False,
        )
        section = doctor._workers(config)
    assert not section["ok"]
    assert [(w["endpoint"], w["reachable"]) for w in section["workers"]] == sorted(
        [(alive, True), (dead, False)]
    )


@pytest.mark.parametrize("command", ["worker", "compose"])
def test_new_commands_have_help(command: str, capsys, monkeypatch) -> None:
    code, out, _ = herd(capsys, monkeypatch, command, "--help")
    assert code == 0 and "Usage:" in out


def test_worker_command_line_and_gpu_choice() -> None:
    argv = rpc.worker_argv(Path("/b/rpc-server"), "192.168.1.20", 50052, cache=True)
    assert argv == ["/b/rpc-server", "--host", "192.168.1.20", "--port", "50052", "--cache"]
    assert rpc.worker_env({"A": "1"}, "1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in rpc.worker_env({"A": "1"}, None)
    assert rpc.format_endpoint("::1", 50052) == "[::1]:50052"
    assert rpc.parse_endpoint("[::1]:50052") == ("::1", 50052)

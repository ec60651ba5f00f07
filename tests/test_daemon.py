"""The daemon with a real llama-server on generated models: up, chat, switch, restore, down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import server_key, servers_for, wait_until

from llamaherd import control, paths
from llamaherd.daemon.record import running_record
from llamaherd.schema import ModelStatus, SwitchDone, SwitchFailed


def served_model(status: ModelStatus) -> str:
    """The model id the llama-server of a /status answer serves (herd passes --alias <id>)."""
    key = {"Authorization": f"Bearer {server_key(status)}"}
    return httpx.get(f"{status.url}/v1/models", headers=key, timeout=10).json()["data"][0]["id"]


def chat_reply(status: ModelStatus) -> dict:
    """A chat straight to the llama-server of a /status answer (its port wants herd's key)."""
    request = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8}
    key = {"Authorization": f"Bearer {server_key(status)}"}
    url = f"{status.url}/v1/chat/completions"
    return httpx.post(url, json=request, headers=key, timeout=120).raise_for_status().json()


def test_up_chat_switch_restore_down(herd, model_files: Path) -> None:
    answer = control.up(herd, "dense")
    assert answer.ok and answer.state == "ready"
    assert served_model(answer) == "dense"
    assert chat_reply(answer)["choices"][0]["message"]["role"] == "assistant"

    client = control.connect(herd)
    answer = client.switch("moe")
    assert answer.ok
    assert served_model(answer) == "moe"
    assert client.status().model == "moe"

    # A profile whose file is not a GGUF: the switch fails, says why, and moe comes back.
    failed = client.switch("broken")
    assert failed.ok is False
    assert failed.restored == "moe"
    assert "exited" in failed.error
    assert failed.log_tail, "the failure carries llama-server's last log lines"
    status = client.status()
    assert status.model == "moe" and status.state == "ready"
    assert status.last_error.model == "broken"
    assert chat_reply(status)["choices"], "the restored model answers"
    assert len(servers_for(model_files)) == 1

    assert control.down(client)["stopped"] == ["moe"]
    assert wait_until(lambda: not servers_for(model_files), timeout=5)
    assert client.status().model is None

    control.down(client, stop_daemon=True)
    assert not client.alive()
    assert running_record() is None


def test_alias_and_logs(herd) -> None:
    answer = control.up(herd, "d")  # alias of dense
    assert answer.model == "dense"
    client = control.connect(herd)
    logs = client.logs(tail=500)
    assert logs.model == "dense"
    assert any("llama-server" in line or "model" in line for line in logs.lines)
    newer = client.logs(tail=500, since=logs.total)
    assert len(newer.lines) <= 500
    assert client.logs(tail=0).lines == []


def test_unknown_model_is_404_and_changes_nothing(herd) -> None:
    control.up(herd, "dense")
    response = httpx.post(f"{herd.server.api_url}/switch", json={"model": "nope"}, timeout=10)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    assert control.connect(herd).status().model == "dense"


def test_failed_first_start_reports_failed_state(herd) -> None:
    answer = control.up(herd, "broken")
    assert answer.ok is False and answer.restored is None
    status = control.connect(herd).status()
    assert status.state == "failed" and status.model == "broken"
    assert status.last_error.log_tail


def test_concurrent_switches_are_serialized(herd, model_files: Path) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    answers: list[SwitchDone | SwitchFailed] = []
    threads = [
        threading.Thread(target=lambda m=m: answers.append(client.switch(m)))
        for m in ("moe", "dense", "moe")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a.ok for a in answers)
    status = client.status()
    assert status.state == "ready"
    assert served_model(status) == status.model
    assert len(servers_for(model_files)) == 1, "one model at a time, never two half-switched"


def test_sigkill_daemon_leaves_no_server(herd, model_files: Path) -> None:
    answer = control.up(herd, "dense")
    server_pid = answer.pid
    assert psutil.pid_exists(server_pid)
    os.kill(running_record()["pid"], signal.SIGKILL)
    assert wait_until(lambda: not psutil.pid_exists(server_pid), timeout=5)
    assert not servers_for(model_files)


def test_second_daemon_refuses_to_start(herd) -> None:
    control.up(herd, "dense")
    second = subprocess.run(
        [sys.executable, "-m", "llamaherd", "--config", str(herd.path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert control.connect(herd).status().model == "dense"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_shut_the_daemon_down_cleanly(
    herd, model_files: Path, sig: signal.Signals
) -> None:
    # SIGTERM is what systemd (and `kill`) send; SIGINT is Ctrl-C on `herd serve`.
    daemon = subprocess.Popen(
        [sys.executable, "-m", "llamaherd", "--config", str(herd.path), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = control.connect(herd)
    try:
        assert wait_until(client.alive, timeout=30)
        server_pid = control.up(herd, "dense").pid
        daemon.send_signal(sig)
        assert daemon.wait(timeout=30) == 0, daemon.stderr.read()
    finally:
        daemon.kill()
        daemon.wait()
    assert not psutil.pid_exists(server_pid), "the model was stopped, not left behind"
    assert not servers_for(model_files)
    state = paths.state_dir()
    assert not (state / "daemon.json").exists()
    assert not list((state / "servers").glob("*.json"))

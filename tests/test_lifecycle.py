"""Several models at once, eviction, crashes and restarts, idle TTL (real llama-servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from conftest import servers_for, wait_until, write_config

from llamaherd import control, paths
from llamaherd.config import Config, load_config
from llamaherd.runtime import auth_headers, process
from llamaherd.runtime.native import NativeRuntime

# A third working profile, for eviction order.
DENSE2 = '\n[models.dense2]\nextends = "dense"\nname = "Tiny dense, again"\n'


def ask(config: Config, model: str | None = None) -> httpx.Response:
    request: dict = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    if model:
        request["model"] = model
    return httpx.post(f"{config.server.public_url}/v1/chat/completions", json=request, timeout=120)


def loaded(config: Config) -> dict[str, int]:
    """model id -> llama-server pid, for every running model."""
    return {m.model: m.pid for m in control.connect(config).status().loaded}


def test_two_models_stay_loaded_and_alternate_without_restarts(make_herd) -> None:
    herd = make_herd(max_loaded=2)
    control.up(herd, "dense")
    assert ask(herd, "moe").json()["model"] == "moe"
    pids = loaded(herd)
    assert set(pids) == {"dense", "moe"}
    for model in ("dense", "moe", "dense", "moe", "dense"):
        assert ask(herd, model).json()["model"] == model
    assert loaded(herd) == pids, "no model was restarted"
    # Starting moe for a request made it current; requests to loaded models do not.
    assert control.connect(herd).status().model == "moe"


def test_least_recently_used_model_is_evicted(make_herd) -> None:
    herd = make_herd(DENSE2, max_loaded=2)
    control.up(herd, "dense")
    ask(herd, "moe")
    ask(herd, "dense")  # dense is now more recently used than moe
    assert ask(herd, "dense2").status_code == 200
    assert set(loaded(herd)) == {"dense", "dense2"}


def test_persistent_model_is_never_evicted(make_herd) -> None:
    herd = make_herd(
        DENSE2.replace('name = "Tiny dense, again"', "persistent = true"), max_loaded=2
    )
    control.up(herd, "dense2")
    ask(herd, "dense")
    ask(herd, "moe")  # dense2 is least recently used, but persistent: dense goes
    assert set(loaded(herd)) == {"dense2", "moe"}


def test_crashed_model_is_detected_and_restarted(herd: Config) -> None:
    answer = control.up(herd, "dense")
    os.kill(answer.pid, signal.SIGKILL)
    client = control.connect(herd)
    assert wait_until(lambda: client.status().state == "failed", timeout=2.0)
    error = client.status().last_error
    assert error.model == "dense" and "unexpectedly with code -9" in error.reason
    assert wait_until(lambda: client.status().state == "ready", timeout=15)
    status = client.status()
    assert status.pid != answer.pid and status.restarts == 1
    assert ask(herd).status_code == 200
    log = (paths.state_dir() / "daemon.log").read_text()
    assert "crash model=dense code=-9" in log and "restart model=dense attempt=1" in log


def test_restart_never_leaves_a_crashed_model_failed(make_herd) -> None:
    herd = make_herd('\n[models.fragile]\nextends = "dense"\nrestart = "never"\n')
    answer = control.up(herd, "fragile")
    os.kill(answer.pid, signal.SIGKILL)
    client = control.connect(herd)
    assert wait_until(lambda: client.status().state == "failed", timeout=2.0)
    assert not wait_until(lambda: client.status().state != "failed", timeout=3.0)


def test_idle_model_is_unloaded_after_ttl_and_started_on_demand(make_herd) -> None:
    herd = make_herd('\n[models.brief]\nextends = "dense"\nttl = 1\n')
    answer = control.up(herd, "brief")
    client = control.connect(herd)
    assert wait_until(lambda: client.status().state == "stopped", timeout=10)
    assert not psutil.pid_exists(answer.pid)
    assert ask(herd).json()["model"] == "brief", "the next request starts it again"


def test_a_slow_start_outlasting_the_queue_timeout_leaves_one_tracked_server(
    tmp_path, model_files, llama_server
) -> None:
    """Requests that give up waiting for a slow load used to cancel the start: each later
    request started another llama-server and the earlier ones were forgotten (orphans)."""
    slow = tmp_path / "slow-llama-server"
    slow.write_text(f'#!/bin/sh\nsleep 2\nexec "{llama_server}" "$@"\n')
    slow.chmod(0o755)
    herd = load_config(write_config(tmp_path, model_files, slow, queue_timeout=0.3))
    client = control.start_background(herd)  # the daemon, no model yet
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: ask(herd, "dense").status_code, range(4)))
        assert answers == [503] * 4, "each request gave up waiting"
        assert wait_until(lambda: client.status().state == "ready", timeout=60)
        assert ask(herd, "dense").status_code == 200
        running = servers_for(model_files)
        assert [p.pid for p in running] == [client.status().pid], "one llama-server, tracked"
        assert client.stop().stopped == ["dense"]
        assert wait_until(lambda: not servers_for(model_files), timeout=10)
    finally:
        control.down(client, stop_daemon=True)  # it outlived the test run before


def test_a_crash_restart_never_exceeds_max_loaded(herd: Config, model_files) -> None:
    answer = control.up(herd, "dense")
    client = control.connect(herd)
    os.kill(answer.pid, signal.SIGKILL)
    assert wait_until(lambda: client.status().state == "failed", timeout=5)
    assert ask(herd, "moe").status_code == 200  # moe takes the one slot (max_loaded 1)
    log = paths.state_dir() / "daemon.log"
    assert wait_until(lambda: "restart_skipped model=dense" in log.read_text(), timeout=15)
    running = {model: pid for model, pid in loaded(herd).items() if pid is not None}
    assert list(running) == ["moe"], "dense stays failed: moe took its place"
    assert [p.pid for p in servers_for(model_files)] == [running["moe"]]


# Context shift lets a generation run on past the context: as long as the test needs.
ENDLESS = '\n[models.endless]\nextends = "dense"\nargs = ["--context-shift"]\n'


def test_stopping_a_busy_server_does_not_wait_the_whole_grace(
    make_herd, llama_server: Path, tmp_path: Path
) -> None:
    # llama-server waits for a running generation after a first SIGTERM; a model switch
    # must not wait stop_timeout for it.
    profile = make_herd(ENDLESS).models["endless"]
    request = {"prompt": "Once", "n_predict": 1_000_000, "ignore_eos": True, "stream": True}

    async def scenario() -> float:
        runtime = NativeRuntime(llama_server)
        server = await runtime.start(profile, port=process.free_port(), run_dir=tmp_path)
        try:
            await server.wait_ready(60)
            async with httpx.AsyncClient(timeout=60) as http:
                url = f"{server.url}/completion"
                key = auth_headers(server.api_key)
                async with http.stream("POST", url, json=request, headers=key) as response:
                    tokens = response.aiter_lines()
                    for _ in range(20):  # generating for real
                        await anext(tokens)
                    began = time.monotonic()
                    await server.stop(60)
                    took = time.monotonic() - began
        finally:
            await server.stop(0)
        assert server.returncode is not None and not psutil.pid_exists(server.pid)
        return took

    assert asyncio.run(scenario()) < 10

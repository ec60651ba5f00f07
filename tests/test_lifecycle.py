"""Several models at once, eviction, crashes and restarts, idle TTL (real llama-servers)."""

from __future__ import annotations

import os
import signal

import httpx
import psutil
from conftest import wait_until

from llamaherd import control, paths
from llamaherd.config import Config

# A third working profile, for eviction order.
DENSE2 = '\n[models.dense2]\nextends = "dense"\nname = "Tiny dense, again"\n'


def ask(config: Config, model: str | None = None) -> httpx.Response:
    request: dict = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    if model:
        request["model"] = model
    return httpx.post(f"{config.server.public_url}/v1/chat/completions", json=request, timeout=120)


def loaded(config: Config) -> dict[str, int]:
    """model id -> llama-server pid, for every running model."""
    return {m["model"]: m["pid"] for m in control.connect(config).status()["loaded"]}


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
    assert control.connect(herd).status()["model"] == "moe"


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
    os.kill(answer["pid"], signal.SIGKILL)
    client = control.connect(herd)
    assert wait_until(lambda: client.status()["state"] == "failed", timeout=2.0)
    error = client.status()["last_error"]
    assert error["model"] == "dense" and "unexpectedly with code -9" in error["reason"]
    assert wait_until(lambda: client.status()["state"] == "ready", timeout=15)
    status = client.status()
    assert status["pid"] != answer["pid"] and status["restarts"] == 1
    assert ask(herd).status_code == 200
    log = (paths.state_dir() / "daemon.log").read_text()
    assert "crash model=dense code=-9" in log and "restart model=dense attempt=1" in log


def test_restart_never_leaves_a_crashed_model_failed(make_herd) -> None:
    herd = make_herd('\n[models.fragile]\nextends = "dense"\nrestart = "never"\n')
    answer = control.up(herd, "fragile")
    os.kill(answer["pid"], signal.SIGKILL)
    client = control.connect(herd)
    assert wait_until(lambda: client.status()["state"] == "failed", timeout=2.0)
    assert not wait_until(lambda: client.status()["state"] != "failed", timeout=3.0)


def test_idle_model_is_unloaded_after_ttl_and_started_on_demand(make_herd) -> None:
    herd = make_herd('\n[models.brief]\nextends = "dense"\nttl = 1\n')
    answer = control.up(herd, "brief")
    client = control.connect(herd)
    assert wait_until(lambda: client.status()["state"] == "stopped", timeout=10)
    assert not psutil.pid_exists(answer["pid"])
    assert ask(herd).json()["model"] == "brief", "the next request starts it again"

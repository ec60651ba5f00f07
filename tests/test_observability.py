"""Events, log streaming, Prometheus metrics and config reload, on a real daemon."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from conftest import wait_until
from prometheus_client.parser import text_string_to_metric_families

from llamaherd import control
from llamaherd.config import Config
from llamaherd.daemon.record import running_record
from llamaherd.errors import UsageError


def collect_events(url: str, stop_when, timeout: float = 60) -> list[dict]:
    """Read `GET /events` until stop_when(events) is true."""
    events: list[dict] = []
    with httpx.stream("GET", f"{url}/events", timeout=timeout) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if stop_when(events):
                    break
    return events


def in_background(function, *args) -> threading.Thread:
    thread = threading.Thread(target=function, args=args)
    thread.start()
    return thread


def test_events_show_a_switch_with_its_state_changes(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    timer = threading.Timer(0.5, client.switch, args=("moe",))
    timer.start()
    events = collect_events(herd.server.api_url, lambda e: e[-1]["type"] == "switch")
    timer.join()
    states = [(e["model"], e["state"]) for e in events if e["type"] == "state"]
    assert states == [
        ("dense", "stopping"),
        ("dense", "stopped"),
        ("moe", "starting"),
        ("moe", "ready"),
    ]
    switch = events[-1]
    assert switch["model"] == "moe" and switch["ok"] and switch["duration_s"] > 0


def test_events_show_a_crash_and_the_restart(herd: Config) -> None:
    answer = control.up(herd, "dense")
    timer = threading.Timer(0.5, os.kill, args=(answer.pid, signal.SIGKILL))
    timer.start()
    events = collect_events(
        herd.server.api_url, lambda e: e[-1].get("state") == "ready" and e[-1]["type"] == "state"
    )
    kinds = [e["type"] for e in events]
    assert kinds.index("crash") < kinds.index("restart")
    crash = next(e for e in events if e["type"] == "crash")
    assert crash["model"] == "dense" and crash["code"] == -9


def test_log_stream_sends_new_lines(herd: Config) -> None:
    control.up(herd, "dense")
    lines: list[str] = []
    in_background(
        lambda: time.sleep(0.5) or control.chat(herd.server.public_url, "hi", max_tokens=2)
    )
    deadline = time.monotonic() + 30
    with httpx.stream("GET", f"{herd.server.api_url}/logs/stream", timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(json.loads(line[6:])["line"])
            if any("print_timing" in x for x in lines) or time.monotonic() > deadline:
                break
    assert any("print_timing" in x for x in lines), "the request's timing line was streamed"


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_switches_and_llama_server_tokens(herd: Config) -> None:
    control.up(herd, "dense")
    for _ in range(3):
        control.chat(herd.server.public_url, "hello", max_tokens=4)
    control.chat(herd.server.public_url, "hello", model="moe", max_tokens=4)
    samples = metric_samples(herd.server.api_url)
    assert samples[("herd_requests_total", (("code", "200"), ("model", "dense")))] == 3
    assert samples[("herd_requests_total", (("code", "200"), ("model", "moe")))] == 1
    assert samples[("herd_switches_total", (("result", "ok"),))] == 2  # up dense, then moe
    assert samples[("herd_time_to_first_byte_seconds_count", (("model", "dense"),))] == 3
    assert samples[("herd_model_up", (("model", "moe"),))] == 1
    assert samples[("herd_model_up", (("model", "dense"),))] == 0
    assert samples[("herd_queue_depth", ())] == 0
    # llama-server's own counters, labelled with the model that produced them
    predicted = samples[("llamacpp:tokens_predicted_total", (("model", "moe"),))]
    assert predicted >= 1


def test_reload_applies_a_good_file_and_keeps_the_old_on_a_bad_one(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    assert herd.path is not None
    original = herd.path.read_text()

    herd.path.write_text(original.replace('name = "Tiny dense"', 'name = "Renamed"'))
    answer = client.reload()
    assert answer.ok and answer.stale == ["dense"]
    assert {m.id: m.name for m in client.models()}["dense"] == "Renamed"

    herd.path.write_text(original + '\n[models.oops]\nfile = "dense.gguf"\ntemprature = 1\n')
    with pytest.raises(UsageError, match="temprature"):
        client.reload()
    assert {m.id: m.name for m in client.models()}["dense"] == "Renamed"
    assert client.status().state == "ready"

    herd.path.write_text(original)
    client.reload()  # now, not when the file watcher gets to it: the restart must see it
    assert client.switch("dense", restart=True).ok
    assert client.status().stale == []


def test_sighup_and_file_changes_reload(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    assert herd.path is not None
    original = herd.path.read_text()

    herd.path.write_text(original.replace('name = "Tiny MoE"', 'name = "Watched"'))
    assert wait_until(
        lambda: {m.id: m.name for m in client.models()}["moe"] == "Watched", timeout=5
    )

    herd.path.write_text(original.replace('name = "Tiny MoE"', 'name = "Hung up"'))
    os.kill(running_record()["pid"], signal.SIGHUP)
    assert wait_until(
        lambda: {m.id: m.name for m in client.models()}["moe"] == "Hung up", timeout=5
    )


def test_reload_refuses_a_file_without_profiles(herd: Config) -> None:
    # An editor that truncates herd.toml before writing it leaves an empty file for a
    # moment; dropping every profile then would answer requests with another model.
    client = control.start_background(herd)
    assert herd.path is not None
    for text in ("", "[server]\n"):
        herd.path.write_text(text)
        with pytest.raises(UsageError, match="no \\[models.<id>\\] profile") as refused:
            client.reload()
        assert str(herd.path) in str(refused.value)
        assert {m.id for m in client.models()} == {"dense", "moe", "broken"}
    client.shutdown()

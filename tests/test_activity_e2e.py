"""The activity log end to end: a real daemon and llama-server (the demo models), real
clients, and `herd activity` reading what they were sent (issue 16: the records' token
counts equal the `usage` the clients received)."""

from __future__ import annotations

import asyncio
import json

import httpx
from conftest import wait_until
from inprocess import herd
from test_tui import SIZE, dashboard, header_text, settle, until

from llamaherd import schema
from llamaherd.schema import Status
from llamaherd.tui.activity import ActivityPane
from llamaherd.tui.app import DashboardApp

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_herd_activity_json_lists_each_request_with_the_usage_clients_received(
    daemon, capsys, monkeypatch
) -> None:
    config = daemon()
    url = config.server.public_url + "/v1/chat/completions"
    usages = []
    with httpx.Client(timeout=120) as http:
        answer = http.post(url, json={"model": "dense", "messages": MESSAGES, "max_tokens": 6})
        assert answer.status_code == 200
        usages.append(answer.json()["usage"])
        body = {
            "model": "dense",
            "messages": MESSAGES,
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with http.stream("POST", url, json=body) as stream:
            chunks = [json.loads(x[6:]) for x in stream.iter_lines() if x.startswith("data: {")]
        usages.append(next(c["usage"] for c in chunks if c.get("usage")))

    def listed() -> list[schema.ActivityRecord]:
        code, out, err = herd(
            capsys, monkeypatch, "--config", str(config.path), "activity", "--json"
        )
        assert code == 0, err
        return schema.ActivityPage.model_validate_json(out).records

    assert wait_until(lambda: len(listed()) == 2, timeout=10)
    streamed, plain = listed()
    for record, usage, stream in ((plain, usages[0], False), (streamed, usages[1], True)):
        assert record.model == "dense" and record.status == 200 and record.stream is stream
        assert record.prompt_tokens == usage["prompt_tokens"]
        assert record.generated_tokens == usage["completion_tokens"]
        assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
        assert record.generation_tps and record.prompt_tps and record.ttft_s
        assert record.cancelled is False
    assert plain.wait_s is not None and plain.wait_s > streamed.wait_s  # plain waited for its load

    code, out, _ = herd(capsys, monkeypatch, "--config", str(config.path), "activity", "--csv")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("id,at,client") and len(lines) == 3
    code, out, _ = herd(capsys, monkeypatch, "--config", str(config.path), "activity")
    assert code == 0 and "dense" in out and "/v1/chat/completions" in out


def test_activity_stream_sends_a_record_per_request(daemon) -> None:
    config = daemon()
    with (
        httpx.Client(timeout=60) as http,
        http.stream("GET", config.server.api_url + "/activity/stream") as events,
    ):
        assert events.headers["content-type"].startswith("text/event-stream")
        http.get(config.server.public_url + "/v1/models")
        record = next(
            schema.ActivityRecord.model_validate_json(line[6:])
            for line in events.iter_lines()
            if line.startswith("data: ")
        )
    assert record.endpoint == "/v1/models" and record.status == 200


def test_dash_shows_the_latest_requests(daemon) -> None:
    config = daemon()
    httpx.post(
        config.server.public_url + "/v1/chat/completions",
        json={"model": "dense", "messages": MESSAGES, "max_tokens": 3},
        timeout=120,
    ).raise_for_status()

    async def scenario() -> str:
        app = dashboard(config)
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(ActivityPane)
            await settle(app, pilot, lambda: "/v1/chat/completions" in pane.shown_text)
            return pane.shown_text

    shown = asyncio.run(scenario())
    assert "200" in shown and "dense" in shown and "out 3" in shown


def test_dash_header_shows_a_load_bar_with_the_stage() -> None:
    daemon = {
        "pid": 1, "version": "0", "config": None, "started_at": 0.0, "uptime_s": 1.0,
        "url": "http://127.0.0.1:8080", "api_url": "http://127.0.0.1:8081", "llama_server": "x",
    }  # fmt: skip
    status = Status.model_validate(
        {"daemon": daemon, "model": "big", "state": "starting", "pid": 12345}
        | {"progress": 0.4, "stage": "reading tensors", "loaded": [], "stale": []}
        | {"waiting": 0, "last_error": None, "model_name": None, "status": "loading"}
    )

    async def scenario() -> str:
        app = DashboardApp("http://127.0.0.1:9", interval=3600)  # nothing answers there
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "disconnected" in header_text(app))
            app.status = status
            app._draw()
            await pilot.pause()
            return header_text(app)

    assert "████░░░░░░ 40% reading tensors" in asyncio.run(scenario())

"""The activity log in-process, on the fake runtime: a record per gateway request with the
token counts the client received, a client that leaves, retention, a disk that fails, and
captures that never keep credentials. The end-to-end check with a real llama-server and
`herd activity --json` is in test_activity_e2e.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fake_runtime import FakeRuntime
from test_gateway_edges import Client, calling, server_of
from test_supervisor import herd as supervised
from test_supervisor import run, wait_until

from llamaherd import schema
from llamaherd.daemon.activity import ActivityLog
from llamaherd.daemon.api import create_app
from llamaherd.daemon.gateway import Gateway
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.supervisor import Supervisor

CHAT = "/v1/chat/completions"


@asynccontextmanager
async def logged(
    tmp_path: Path, fake: FakeRuntime, db: Path | None = None, **server: object
) -> AsyncIterator[tuple[Gateway, Supervisor, ActivityLog]]:
    async with supervised(tmp_path, fake, **server) as supervisor:
        log = ActivityLog(db or tmp_path / "activity.sqlite", lambda: supervisor.config.server)
        gateway = Gateway(supervisor, activity=log)
        try:
            yield gateway, supervisor, log
        finally:
            await gateway.close()
            await asyncio.to_thread(log.close)


def gateway_client(gateway: Gateway, key: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}", "x-api-key": key} if key else {}
    transport = httpx.ASGITransport(app=gateway, client=("10.1.2.3", 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://herd", headers=headers)


def api_client(supervisor: Supervisor, log: ActivityLog) -> httpx.AsyncClient:
    app = create_app(
        supervisor,
        Metrics(supervisor, httpx.AsyncClient()),
        on_shutdown=lambda: None,
        on_reload=dict,
        activity=log,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def records(log: ActivityLog, count: int, **filters: object) -> list[schema.ActivityRecord]:
    """The newest records once `count` of them are written (the writer runs apart)."""
    assert await wait_until(lambda: len(log.page(**filters).records) >= count)  # type: ignore[arg-type]
    return log.page(**filters).records  # type: ignore[arg-type]


def stream_usage(text: str) -> dict:
    """The `usage` of the stream's chunk that carried one."""
    chunks = [json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: {")]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    return usage


def test_each_request_leaves_a_record_with_the_usage_its_client_received(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with logged(tmp_path, fake) as (gateway, supervisor, log):
            async with gateway_client(gateway) as http:
                messages = [{"role": "user", "content": "hi"}]
                plain = await http.post(
                    CHAT, json={"model": "a", "messages": messages, "max_tokens": 5}
                )
                body = {
                    "model": "b",
                    "messages": messages * 3,
                    "max_tokens": 7,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                streamed = await http.post(CHAT, json=body)
            second, first = await records(log, 2)
            assert (first.model, first.requested, first.status) == ("a", "a", 200)
            assert (first.client, first.endpoint, first.method) == ("10.1.2.3", CHAT, "POST")
            usage = plain.json()["usage"]
            assert (first.prompt_tokens, first.generated_tokens) == (
                usage["prompt_tokens"],
                usage["completion_tokens"],
            )
            assert first.stream is False and first.cancelled is False
            assert first.generation_tps == 1000.0 and first.prompt_tps == 500.0
            assert first.wait_s is not None and first.wait_s > 0  # it waited for a's start
            assert first.ttft_s is not None and first.duration_s >= first.ttft_s
            usage = stream_usage(streamed.text)
            assert second.stream is True and second.model == "b"
            assert (second.prompt_tokens, second.generated_tokens) == (
                usage["prompt_tokens"],
                usage["completion_tokens"],
            )

    run(scenario)


def test_a_client_leaving_mid_stream_is_recorded_as_cancelled(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with logged(tmp_path, fake) as (gateway, supervisor, log):
            assert (await supervisor.switch("a")).ok
            client = Client({"model": "a", "max_tokens": 100_000, "stream": True})
            task = calling(gateway, client)
            assert await wait_until(lambda: client.body_bytes > 0)
            client.leave()
            await asyncio.wait_for(task, 10)
            (record,) = await records(log, 1)
            assert record.cancelled is True and record.status == 200 and record.model == "a"
            assert record.generated_tokens is None  # the last chunk never came
            assert await wait_until(lambda: server_of(fake, "a").cancelled == 1)

    run(scenario)


def test_retention_keeps_the_newest_rows_and_drops_old_days(tmp_path) -> None:
    fake = FakeRuntime()
    db = tmp_path / "activity.sqlite"

    async def scenario() -> None:
        async with logged(tmp_path, fake, db=db, activity_rows=3) as (gateway, supervisor, log):
            async with gateway_client(gateway) as http:
                for _ in range(5):
                    await http.get("/props")  # 503: no model runs; a record all the same
            assert await wait_until(lambda: [r.id for r in log.page().records] == [5, 4, 3])

    fake2 = FakeRuntime()

    async def next_run() -> None:
        async with logged(tmp_path, fake2, db=db) as (gateway, _, log):
            async with gateway_client(gateway) as http:
                await http.get("/props")
            # Ids go on after the file's last; the record from 1970 is past 30 days.
            assert await wait_until(lambda: [r.id for r in log.page().records] == [6, 4, 3])

    run(scenario)
    with sqlite3.connect(db) as old:
        old.execute("UPDATE activity SET at = 1 WHERE id = 5")
    run(next_run)


def test_a_failing_disk_loses_records_but_never_a_request(tmp_path, caplog) -> None:
    fake = FakeRuntime()
    db = tmp_path / "no-such-dir" / "activity.sqlite"

    async def scenario() -> None:
        async with logged(tmp_path, fake, db=db) as (gateway, supervisor, log):
            async with gateway_client(gateway) as http:
                for _ in range(3):
                    answer = await http.post(CHAT, json={"model": "a", "messages": []})
                    assert answer.status_code == 200
            assert await wait_until(lambda: log.dropped == 3)
            async with api_client(supervisor, log) as api:
                page = await api.get("/activity")
            assert page.status_code == 503 and "cannot be read" in page.json()["error"]

    run(scenario)
    assert "activity record(s) not written" in caplog.text


def test_capture_keeps_bodies_but_never_credentials(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with logged(tmp_path, fake, capture=2) as (gateway, supervisor, log):
            async with gateway_client(gateway, key="sk-secret") as http:
                for n in range(3):
                    body = {"model": "a", "messages": [{"role": "user", "content": f"q{n}"}]}
                    await http.post(CHAT, json=body)
            first, second, third = sorted(r.id for r in await records(log, 3))
            assert all(r.captured for r in log.page().records)
            async with api_client(supervisor, log) as api:
                gone = await api.get(f"/activity/{first}/capture")
                kept = await api.get(f"/activity/{third}/capture")
            assert gone.status_code == 404  # the ring holds the last 2
            capture = schema.Capture.model_validate(kept.json())
            assert json.loads(capture.request_body)["messages"][0]["content"] == "q2"
            assert "tok" in capture.response_body
            assert capture.response_headers["x-herd-model"] == "a"
            headers = {k.lower() for k in capture.request_headers}
            assert "authorization" not in headers and "x-api-key" not in headers
            assert "sk-secret" not in kept.text
            # The key did not reach llama-server either (gateway.NOT_FORWARDED).
            assert all("sk-secret" not in str(r["headers"]) for r in server_of(fake, "a").requests)

    run(scenario)


def test_capture_is_off_by_default(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with logged(tmp_path, fake) as (gateway, supervisor, log):
            async with gateway_client(gateway) as http:
                await http.get("/props")
            (record,) = await records(log, 1)
            assert record.captured is False
            async with api_client(supervisor, log) as api:
                answer = await api.get(f"/activity/{record.id}/capture")
            assert answer.status_code == 404 and "capture = N" in answer.json()["hint"]

    run(scenario)


def test_activity_api_filters_pages_and_follows(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with logged(tmp_path, fake, swap_on_request=False) as (gateway, supervisor, log):
            assert (await supervisor.switch("a")).ok
            async with gateway_client(gateway) as http:
                for model in ("a", "a", "nope"):
                    await http.post(CHAT, json={"model": model, "messages": []})
            unknown = (await records(log, 3))[0]
            assert (unknown.requested, unknown.model, unknown.status) == ("nope", None, 404)
            async with api_client(supervisor, log) as api:
                only_a = schema.ActivityPage.model_validate(
                    (await api.get("/activity", params={"model": "a"})).json()
                )
                errors = (await api.get("/activity", params={"status": "4xx"})).json()
                first = schema.ActivityPage.model_validate(
                    (await api.get("/activity", params={"limit": 2})).json()
                )
                rest = (await api.get("/activity", params={"before": first.next_before})).json()
                bad = await api.get("/activity", params={"status": "often"})
            assert [r.model for r in only_a.records] == ["a", "a"]
            assert [r["status"] for r in errors["records"]] == [404]
            assert len(first.records) == 2 and len(rest["records"]) == 1
            assert rest["next_before"] is None
            assert bad.status_code == 400 and "4xx" in bad.json()["error"]

            with log.subscribe() as follower:
                async with gateway_client(gateway) as http:
                    await http.get("/props")
                event = await asyncio.wait_for(follower.get(), 2)
            assert event["type"] == "activity" and event["endpoint"] == "/props"

    run(scenario)

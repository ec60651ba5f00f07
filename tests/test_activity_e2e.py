"""The activity log end to end: a real daemon and llama-server (the demo models), real
clients, and `herd activity` reading what they were sent (issue 16: the records' token
counts equal the `usage` the clients received)."""

from __future__ import annotations

import json

import httpx
from conftest import wait_until
from inprocess import herd

from llamaherd import schema

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

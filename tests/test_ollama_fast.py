"""The Ollama API's translations and errors, and per-request lifetimes, in-process on the
fake runtime: what llama-server is sent for Ollama's options and formats, the errors a
client gets in Ollama's shape, and keep_alive/ttl on the model (tests/test_ollama.py
runs the same through the real client and real llama-servers)."""

from __future__ import annotations

import json
import math

import pytest
from fake_runtime import FakeRuntime
from test_gateway_edges import asgi_client, gateway_on, server_of
from test_supervisor import run, wait_until

from llamaherd.daemon import lifetime
from llamaherd.daemon.ollama_shapes import parameter_size, sampling

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(300, 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("0", 0.0), (0, 0.0),
     ("600", 600.0), (-1, math.inf), ("-1m", math.inf)],
)  # fmt: skip
def test_keep_alive_reads_seconds_and_go_durations(given: object, seconds: float) -> None:
    assert lifetime.parse(given) == pytest.approx(seconds)


@pytest.mark.parametrize("given", ["soon", "5 m", "", True, None, [1], "1d"])
def test_a_keep_alive_that_is_no_duration_is_refused_with_the_forms(given: object) -> None:
    with pytest.raises(lifetime.LifetimeError, match=r"keep_alive: .*\"5m\""):
        lifetime.parse(given)


def test_options_map_to_llama_servers_fields_and_load_options_are_ignored() -> None:
    options = {"temperature": 0.2, "num_predict": 7, "num_ctx": 8192, "repeat_penalty": 1.1,
               "num_keep": 4, "stop": ["\n"], "num_gpu": 99}  # fmt: skip
    fields, ignored = sampling(options)
    assert fields == {"temperature": 0.2, "max_tokens": 7, "repeat_penalty": 1.1,
                      "n_keep": 4, "stop": ["\n"]}  # fmt: skip
    assert ignored == ["num_ctx", "num_gpu"]
    assert sampling({"num_predict": -1}) == ({}, [])  # no limit: llama-server's default
    assert (parameter_size(7_615_616_512), parameter_size(494_000_000)) == ("7.6B", "494M")


def test_chat_reaches_llama_server_translated(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, _), asgi_client(gateway) as client:
            schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
            body = {"model": "a", "messages": HI, "stream": False, "format": schema,
                    "options": {"num_predict": 3, "top_k": 5, "num_ctx": 4096}}  # fmt: skip
            answer = await client.post("/api/chat", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-herd-ignored-options"] == "num_ctx"
            data = answer.json()
            assert data["message"] == {"role": "assistant", "content": " tok" * 3}
            assert (data["done"], data["done_reason"], data["eval_count"]) == (True, "length", 3)
            sent = json.loads(server_of(fake, "a").requests[-1]["body"])
            assert server_of(fake, "a").requests[-1]["path"] == "/v1/chat/completions"
            assert sent["max_tokens"] == 3 and sent["top_k"] == 5 and "num_ctx" not in sent
            assert sent["response_format"]["json_schema"]["schema"] == schema
            stream = await client.post(
                "/api/generate", json={"model": "a", "prompt": "x", "format": "json"}
            )
            lines = [json.loads(line) for line in stream.text.splitlines()]
            assert stream.headers["content-type"] == "application/x-ndjson"
            assert "".join(line["response"] for line in lines) == " tok" * 8
            assert [line["done"] for line in lines][-2:] == [False, True]
            sent = json.loads(server_of(fake, "a").requests[-1]["body"])
            assert sent["response_format"] == {"type": "json_object"}
            assert sent["messages"] == [{"role": "user", "content": "x"}]

    run(scenario)


def test_errors_come_in_ollamas_shape(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, _), asgi_client(gateway) as client:
            cases = [
                ("/api/chat", {"model": "nope", "messages": HI}, 404, "herd's profiles: a, b, c"),
                ("/api/chat", {"messages": HI}, 400, "model: Field required"),
                ("/api/chat", {"model": "a", "messages": HI, "keep_alive": "later"}, 400, "5m"),
                ("/api/generate", {"model": "a", "prompt": "x", "format": "yaml"}, 400, "json"),
                ("/api/generate", {"model": "a", "prompt": "x", "suffix": "y"}, 400, "/infill"),
                ("/api/create", {"model": "x"}, 501, "herd add"),
                ("/api/copy", {"source": "a", "destination": "z"}, 501, "extends"),
                ("/api/nothing", {}, 404, "not an Ollama endpoint"),
            ]
            for path, body, status, words in cases:
                answer = await client.post(path, json=body)
                assert answer.status_code == status, (path, answer.text)
                assert words in answer.json()["error"], (path, answer.text)
            assert fake.alive() == []  # none of them started a model

    run(scenario)


def test_keep_alive_zero_unloads_right_after_the_answer(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with (
            gateway_on(tmp_path, fake) as (gateway, supervisor),
            asgi_client(gateway) as client,
        ):
            body = {"model": "a", "messages": HI, "max_tokens": 2, "keep_alive": "10m"}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            assert supervisor.models["a"].ttl == 600
            body["ttl"], body["keep_alive"] = 0, None  # LM Studio's field
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            # at once, not at the next TTL check (once a second)
            assert await wait_until(lambda: "a" not in supervisor.models, timeout=0.5)
            del body["ttl"]  # a request without one: the profile's ttl (none: kept)
            await client.post("/v1/chat/completions", json=body)
            assert supervisor.models["a"].ttl is None

    run(scenario)

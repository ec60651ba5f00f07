"""The gateway in-process on the fake runtime: clients that leave at each stage, aborted
uploads, a hung or dying llama-server, bodies in other content types. None of these can
be staged on demand with a real llama-server; each test naming a defect failed before.
One end-to-end check with a real llama-server closes the file."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fake_runtime
import httpx
import pytest
from conftest import server_key
from conftest import wait_until as wait_until_sync
from fake_runtime import FakeRuntime, FakeServer, Knobs
from test_supervisor import herd as supervised
from test_supervisor import run, wait_until

from llamaherd import control
from llamaherd.daemon.gateway import Gateway
from llamaherd.daemon.model import State
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.schema import ModelStatus

CHAT = "/v1/chat/completions"
LONG = 100_000  # tokens: at the fakes' default speed, minutes of generation for nobody


class Client:
    """An ASGI client that leaves when the test says so: `receive` hands out `chunks` of
    the body, then `http.disconnect` once `leave()` is called or the response is complete
    (as uvicorn does). `complete=False`: the client leaves after the chunks, mid-upload."""

    def __init__(self, body: dict | bytes, *, complete: bool = True, chunks: int = 1) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        size = -(-len(data) // chunks)
        parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        self._pending = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1 or not complete}
            for i, part in enumerate(parts)
        ]
        if not complete:
            self._pending.append({"type": "http.disconnect"})
        self.length = len(data)
        self.sent: list[dict] = []
        self.gone = asyncio.Event()

    def scope(self, path: str = CHAT) -> dict:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(self.length).encode()),
        ]
        return {
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
        }

    async def receive(self) -> dict:
        if self._pending:
            return self._pending.pop(0)
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.gone.set()

    def leave(self) -> None:
        self.gone.set()

    @property
    def status(self) -> int | None:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        return starts[0] if starts else None

    @property
    def body_bytes(self) -> int:
        return sum(len(m.get("body", b"")) for m in self.sent if m["type"] == "http.response.body")

    @property
    def completed(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.sent)


@asynccontextmanager
async def gateway_on(
    tmp_path: Path, fake: FakeRuntime, **server: object
) -> AsyncIterator[tuple[Gateway, Supervisor]]:
    async with supervised(tmp_path, fake, **server) as supervisor:
        gateway = Gateway(supervisor)
        try:
            yield gateway, supervisor
        finally:
            await gateway.close()


def calling(gateway: Gateway, client: Client, path: str = CHAT) -> asyncio.Task[None]:
    return asyncio.ensure_future(gateway(client.scope(path), client.receive, client.send))


def asgi_client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://herd")


def server_of(fake: FakeRuntime, model: str) -> FakeServer:
    (server,) = fake.alive(model)
    return server


# -- a client that leaves ---------------------------------------------------------------


def test_client_leaving_a_non_streaming_request_stops_generation(tmp_path) -> None:
    """Defect: `_send` awaited llama-server's headers without watching for the client, so
    a non-streaming request went on generating for nobody (37 s seen)."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            server = server_of(fake, "a")
            client = Client({"model": "a", "max_tokens": LONG, "messages": []})
            task = calling(gateway, client)
            assert await wait_until(lambda: server.generating == 1)
            client.leave()
            await asyncio.wait_for(task, 2)
            assert await wait_until(lambda: server.generating == 0, timeout=1)
            assert server.cancelled == 1
            assert supervisor.models["a"].in_flight == 0

    run(scenario)


def test_client_leaving_mid_stream_stops_generation(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(tokens_per_second=100)})

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            server = server_of(fake, "a")
            client = Client({"model": "a", "max_tokens": LONG, "stream": True})
            task = calling(gateway, client)
            assert await wait_until(lambda: client.body_bytes > 0)  # tokens are flowing
            client.leave()
            await asyncio.wait_for(task, 2)
            assert await wait_until(lambda: server.generating == 0, timeout=1)
            assert server.cancelled == 1
            assert supervisor.models["a"].in_flight == 0
            assert not client.completed

    run(scenario)


def test_client_leaving_while_its_model_starts_does_not_cancel_the_start(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(load_delay=1.0)})

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            client = Client({"model": "a", "messages": []})
            task = calling(gateway, client)
            assert await wait_until(lambda: supervisor.state_of("a") == State.STARTING)
            assert supervisor.waiting == 1
            client.leave()
            await asyncio.wait_for(task, 0.5)  # the request goes at once ...
            assert supervisor.waiting == 0
            assert client.status is None
            # ... the start goes on, and its model serves the next request.
            assert await wait_until(lambda: supervisor.state_of("a") == State.READY)
            async with asgi_client(gateway) as http:
                response = await http.post(CHAT, json={"model": "a", "messages": []})
            assert response.status_code == 200 and response.headers["x-herd-model"] == "a"
            assert len(fake.servers) == 1

    run(scenario)


def test_aborted_upload_forwards_nothing_and_releases_the_request(tmp_path) -> None:
    """Defect: a disconnect mid-upload was taken for the end of the body; the truncated
    body went upstream with the client's Content-Length, llama-server waited for the rest
    forever, and the request stayed in flight (every later stop waited drain_timeout)."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake, drain_timeout=30) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            server = server_of(fake, "a")
            body = {"model": "a", "messages": [{"role": "user", "content": "x" * 1000}]}
            client = Client(body, chunks=3, complete=False)
            task = calling(gateway, client)
            await asyncio.wait_for(task, 2)
            assert client.status is None  # nobody to answer
            assert server.requests == [] and server.generating == 0
            assert supervisor.models["a"].in_flight == 0
            began = time.monotonic()
            assert await supervisor.stop("a") == ["a"]
            assert time.monotonic() - began < 5, "the stop waited for a request in flight"

    run(scenario)


def test_a_body_sent_in_chunks_arrives_whole_with_its_own_length(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            body = json.dumps({"model": "a", "messages": [], "pad": "y" * 5000}).encode()
            client = Client(body, chunks=4)
            await asyncio.wait_for(calling(gateway, client, "/tokenize"), 5)
            assert client.status == 200
            (received,) = server_of(fake, "a").requests
            assert received["body"] == body
            assert received["headers"]["Content-Length"] == str(len(body))

    run(scenario)


# -- a hung or dying llama-server ---------------------------------------------------------


def test_hung_llama_server_answers_504_after_upstream_timeout(tmp_path) -> None:
    """Defect: there was no upstream timeout; a hung llama-server held requests forever."""
    fake = FakeRuntime({"a": Knobs(stall_headers=True)})

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake, upstream_timeout=0.3) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            async with asgi_client(gateway) as http:
                response = await asyncio.wait_for(
                    http.post(CHAT, json={"model": "a", "messages": []}), 5
                )
            assert response.status_code == 504
            message = response.json()["error"]["message"]
            assert "0.3" in message and "upstream_timeout" in message
            assert supervisor.models["a"].in_flight == 0
            assert await wait_until(lambda: server_of(fake, "a").cancelled == 1, timeout=1)

    run(scenario)


def test_llama_server_going_silent_mid_stream_ends_the_response(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(tokens_per_second=2)})  # a token each 0.5 s

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake, upstream_timeout=0.2) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            client = Client({"model": "a", "max_tokens": LONG, "stream": True})
            await asyncio.wait_for(calling(gateway, client), 5)
            assert client.status == 200
            assert not client.completed, "a cut stream must not look finished"
            assert supervisor.models["a"].in_flight == 0
            assert await wait_until(lambda: server_of(fake, "a").cancelled == 1, timeout=1)

    run(scenario)


class DiesMidRequest(FakeServer):
    """A llama-server that crashes while answering: the connection is cut and the port
    no longer listens, so the gateway's retry on a fresh connection cannot connect."""

    async def _answer(self, request):
        await request.read()
        assert self._runner is not None
        for site in list(self._runner.sites):
            await site.stop()
        assert request.transport is not None
        request.transport.close()
        self._spawn(self._exit(139, "Segmentation fault"))
        await asyncio.Event().wait()  # cancelled with the connection


def test_llama_server_dying_mid_request_is_reported_not_cannot_connect(
    tmp_path, monkeypatch
) -> None:
    """Defect: the retry's "Cannot connect" replaced the real error."""
    monkeypatch.setattr(fake_runtime, "FakeServer", DiesMidRequest)
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            async with asgi_client(gateway) as http:
                response = await http.post(CHAT, json={"model": "a", "messages": []})
            assert response.status_code == 502
            message = response.json()["error"]["message"]
            assert message.startswith("llama-server did not answer: Server disconnected")
            assert supervisor.models["a"].in_flight == 0

    run(scenario)


# -- which model answers, and errors ------------------------------------------------------


def test_text_plain_body_naming_a_model_is_answered_by_that_model(tmp_path) -> None:
    """Defect: `model` was read only from JSON content types, while llama-server parses
    any body: a text/plain request naming b was answered by a."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            assert (await supervisor.switch("a")).ok
            body = json.dumps({"model": "b", "messages": []})
            async with asgi_client(gateway) as http:
                response = await http.post(
                    CHAT, content=body, headers={"content-type": "text/plain"}
                )
            assert response.status_code == 200
            assert response.headers["x-herd-model"] == "b"
            assert response.json()["model"] == "b"

    run(scenario)


def test_a_model_that_failed_to_start_answers_without_retry_after(tmp_path) -> None:
    """Defect: a start that failed (a bad file) answered Retry-After, inviting clients to
    retry something that fails the same way until the file changes."""
    fake = FakeRuntime({"b": Knobs(fail_at_start=1)})

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake) as (gateway, supervisor):
            async with asgi_client(gateway) as http:
                response = await http.post(CHAT, json={"model": "b", "messages": []})
            assert response.status_code == 503
            assert "retry-after" not in response.headers
            error = response.json()["error"]
            assert error["type"] == "api_error"
            assert "b failed to start" in error["message"]

    run(scenario)


def test_a_request_for_a_model_whose_gguf_is_missing_answers_404_with_the_fix(
    tmp_path,
) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with supervised(tmp_path, fake, '[models.m]\nfile = "m.gguf"\n') as supervisor:
            gateway = Gateway(supervisor)
            try:
                async with asgi_client(gateway) as http:
                    response = await http.post(CHAT, json={"model": "m", "messages": []})
            finally:
                await gateway.close()
            assert response.status_code == 404
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")
            assert f"model file not found: {tmp_path / 'm.gguf'}" in error["message"]
            assert "download the GGUF there" in error["message"]
            assert fake.servers == []

    run(scenario)


def test_a_full_queue_answers_503_with_retry_after(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with gateway_on(tmp_path, fake, queue_size=0) as (gateway, supervisor):
            async with asgi_client(gateway) as http:
                response = await http.post(CHAT, json={"model": "a", "messages": []})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"]["type"] == "overloaded_error"

    run(scenario)


# -- with a real llama-server ---------------------------------------------------------------

# Context shift: generation goes on until max_tokens, not just until the 2048-token
# context is full (2 s), so a slot that stops did stop for the client.
ENDLESS = """
[models.endless]
file = "dense.gguf"
ctx = 2048
args = ["--context-shift"]
"""


def slots_busy(answer: ModelStatus) -> bool:
    """Whether the llama-server of a /switch answer is generating (asked with its key)."""
    key = {"Authorization": f"Bearer {server_key(answer)}"}
    slots = httpx.get(f"{answer.url}/slots", headers=key, timeout=5).json()
    return any(slot["is_processing"] for slot in slots)


@pytest.mark.server
def test_client_leaving_a_non_streaming_chat_stops_the_generation(make_herd) -> None:
    """llama-server checks a non-streaming client's connection only after a full second
    without any task result anywhere (a /slots or /metrics answer counts), so the cancel
    lands about a second after the client left while nobody polls it (the daemon's sampler
    asks only while a dashboard watches). The test watches the daemon's copy of its log
    for the cancel (polling /slots would delay it) and checks the slot once; LONG tokens
    would take minutes."""
    herd = make_herd(ENDLESS)
    answer = control.up(herd, "endless")
    daemon = control.connect(herd)
    body = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": LONG, "ignore_eos": True}
    ).encode()
    port = herd.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert wait_until_sync(lambda: slots_busy(answer), timeout=10), "not generating"
    assert wait_until_sync(
        lambda: any("cancel task" in line for line in daemon.logs(50).lines),
        timeout=3,
        interval=0.02,
    ), "llama-server went on generating for nobody"
    assert wait_until_sync(lambda: not slots_busy(answer), timeout=2)


def test_a_missing_gguf_is_named_with_swap_on_request_off_too(tmp_path) -> None:
    """Issue 14's gap: with swap_on_request off, a missing file answered the generic 400
    "not running"; the user needs the "model file not found ... download it" line."""
    fake = FakeRuntime()
    profiles = '[models.m]\nfile = "m.gguf"\n'

    async def scenario() -> None:
        async with supervised(tmp_path, fake, profiles, swap_on_request=False) as supervisor:
            gateway = Gateway(supervisor)
            try:
                async with asgi_client(gateway) as http:
                    response = await http.post(CHAT, json={"model": "m", "messages": []})
            finally:
                await gateway.close()
            assert response.status_code == 404
            assert "model file not found" in response.json()["error"]["message"]

    run(scenario)

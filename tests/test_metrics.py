"""GET /metrics' scrape of the llama-servers, against stand-in servers on loopback."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import httpx

from llamaherd.daemon.metrics import scrape_servers
from llamaherd.daemon.supervisor import State

PAGE = b"# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 0\n"


async def serve(handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts, never answers: a llama-server stuck in a long request


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(PAGE) + PAGE)
    await writer.drain()
    writer.close()


def model(model_id: str, url: str, state: State = State.READY) -> SimpleNamespace:
    return SimpleNamespace(id=model_id, state=state, server=SimpleNamespace(url=url, api_key=None))


def test_hung_servers_are_left_out_after_a_second_together() -> None:
    async def scenario() -> None:
        hung_a, url_a = await serve(hang)
        hung_b, url_b = await serve(hang)
        good, url_good = await serve(answer)
        models = [
            model("stuck-a", url_a),
            model("stuck-b", url_b),
            model("fine", url_good),
            model("loading", url_good, State.STARTING),
        ]
        async with httpx.AsyncClient() as http:
            began = time.monotonic()
            pages = await scrape_servers(http, models)
            elapsed = time.monotonic() - began
        for server in (hung_a, hung_b, good):
            server.close()
        assert pages == {"stuck-a": None, "stuck-b": None, "fine": PAGE.decode()}
        # Each hung server costs about a second, at the same time as the others.
        assert elapsed < 2.0, f"the scrape took {elapsed:.1f}s"

    asyncio.run(scenario())

"""What the gateway's APIs share to reach llama-server (daemon/gateway.py `upstream`):
the request, the response with the model that answers it, the errors before it, and the
one JSON answer writer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from starlette.types import Send

from llamaherd.daemon.activity import Entry
from llamaherd.daemon.model import Model


class UpstreamError(Exception):
    """Why a request could not be handed to llama-server, with the status to answer."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "api_error",
        code: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.headers = status, kind, code, list(headers)


@dataclass
class Upstream:
    """A request for llama-server: `target` is its path and query."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    received: float  # time.monotonic() when the client's request arrived
    entry: Entry | None = None
    keep_alive: float | None = None  # seconds the model stays after it (daemon/lifetime.py)


@dataclass
class Exchange:
    """llama-server's response, from `model`; the reader notes when its first byte went out."""

    model: Model
    response: aiohttp.ClientResponse
    first_byte: float | None = None


async def send_json(
    send: Send, status: int, data: object, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + list(extra_headers)}
    )
    await send({"type": "http.response.body", "body": body})

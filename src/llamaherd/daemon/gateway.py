"""The public endpoint (default 127.0.0.1:8080): one address for every client.

Every path is forwarded to the running llama-server (OpenAI and Anthropic APIs, /props,
/slots, /metrics, the web UI), with status, headers and bodies passed through and
streams relayed chunk by chunk. A request whose `model` (JSON body, or `?model=` on GET)
names another profile makes the daemon switch first; it waits in the supervisor's
bounded queue meanwhile. `GET /v1/models` lists every profile, and llama.cpp's router
model API (load, unload, status events) is answered by daemon/router_api.py, Ollama's
API (`/api/...`) by daemon/ollama.py. A `keep_alive` or `ttl` in a request's body sets
how long its model stays loaded after it (daemon/lifetime.py).

It is a plain ASGI app rather than a framework route so that it controls the stream:
from the moment the request body is read (while the model starts, while llama-server
works on the answer, mid-stream) the request is dropped the moment the client goes away,
and its upstream connection closed, so llama-server stops generating. The upstream client is
aiohttp (C-accelerated HTTP parsing, raw header bytes passed through untouched): with
httpx most of a relayed request's cost was the client itself (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Iterable

import aiohttp
from starlette.datastructures import Headers, QueryParams
from starlette.types import Receive, Scope, Send

from llamaherd.config import Profile, ServerSettings
from llamaherd.config.checks import missing_model_file
from llamaherd.daemon import routing as route
from llamaherd.daemon.activity import ActivityLog, Entry
from llamaherd.daemon.auth import key_matches
from llamaherd.daemon.lifetime import LifetimeError, requested_in
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.model import Busy, State, Unavailable
from llamaherd.daemon.ollama import OllamaApi
from llamaherd.daemon.router_api import RouterApi, RouterError
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.daemon.upstream import Exchange, Upstream, UpstreamError, send_json
from llamaherd.errors import UsageError
from llamaherd.runtime import auth_headers

# Headers that describe one connection, not the message: never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
}
HOP_BY_HOP_BYTES = {name.encode() for name in HOP_BY_HOP}
# The client's key to herd stays here; llama-server gets its own (auth_headers). The body
# is re-sent as read, so aiohttp sets its length: the client's could promise bytes that
# never come.
NOT_FORWARDED = HOP_BY_HOP | {"authorization", "x-api-key", "content-length"}


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class Gateway:
    def __init__(
        self,
        supervisor: Supervisor,
        metrics: Metrics | None = None,
        activity: ActivityLog | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.metrics = metrics
        self.activity = activity
        self._http: aiohttp.ClientSession | None = None
        self.router = RouterApi(supervisor, lambda: self.http)  # llama.cpp's model API
        self.ollama = OllamaApi(self)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The upstream session, made on first use (it must be made inside the loop)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # No timeouts: generation can take minutes; clients set their own.
                timeout=aiohttp.ClientTimeout(total=None),
                # llama-server closes connections idle for 5 s; reusing one just as it
                # does fails the request, so ours are dropped sooner.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
                auto_decompress=False,  # bodies pass through as llama-server sent them
                skip_auto_headers=("Accept-Encoding", "User-Agent"),  # only the client's
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def settings(self) -> ServerSettings:
        return self.supervisor.config.server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do here
        if self.activity is None:
            await self._answer(scope, receive, send, None)
            return
        entry = self.activity.begin(scope)
        try:
            await self._answer(scope, receive, entry.watch(send), entry)
        finally:
            self.activity.finish(entry)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, entry: Entry | None
    ) -> None:
        received = time.monotonic()
        headers = Headers(scope=scope)
        key = self.settings.api_key
        if key and not key_matches(headers, key):
            await _error(send, 401, "missing or wrong API key", "authentication_error")
            return
        try:
            body = await _read_body(receive, int(self.settings.max_request_mb * 1024 * 1024))
        except BodyTooLarge:
            limit = f"{self.settings.max_request_mb:g} MB"
            await _error(send, 413, f"request body over {limit} ([server] max_request_mb)")
            return
        except ClientGone:
            if entry:
                entry.cancelled = True
            return  # an aborted upload: nothing is forwarded, nobody is left to answer
        if entry:
            entry.request_body(scope, body)
        try:
            reply = await self.router.answer(scope, body)
        except RouterError as error:
            await _error(send, error.status, str(error), error.kind)
            return
        if isinstance(reply, tuple):
            await send_json(send, *reply)
            return
        if reply is not None:  # /models/sse
            await _unless_client_leaves(_stream(send, reply), receive)
            return
        if scope["path"].startswith("/api/"):  # Ollama's API (daemon/ollama.py)
            answer = self.ollama.answer(scope, send, body, received, entry)
            left = await _unless_client_leaves(answer, receive)
            if entry:
                entry.cancelled = left
            return
        requested = _requested_model(scope, body)
        if entry:
            entry.requested = requested
        if route.is_auto(requested) and self._find(requested) is None:
            requested = route.choose(requested, body, self.supervisor.config)
        model_id, problem = self.choose(requested)
        if problem:
            await _error(send, *problem)
            return
        try:
            keep_alive = requested_in(body)
        except LifetimeError as error:
            await _error(send, 400, str(error))
            return
        left = await _unless_client_leaves(
            self._forward(scope, send, headers, body, model_id, received, entry, keep_alive),
            receive,
        )
        if entry:
            entry.cancelled = left

    def choose(self, requested: str | None) -> tuple[str | None, tuple | None]:
        """The profile to serve a request with (None: the running one), or an error."""
        if requested is None:
            return None, None
        profile = self._find(requested)
        running = self.supervisor.current
        if profile is None:
            if self.settings.swap_on_request:
                return None, None  # a client's own name (e.g. "gpt-4o"): the running model
            return None, (
                404,
                f"unknown model '{requested}'",
                "invalid_request_error",
                "model_not_found",
            )
        idle = self.supervisor.state_of(profile.id) != State.READY
        if idle and (missing := missing_model_file(self.supervisor.config, profile)):
            return None, (404, str(missing), "invalid_request_error", "model_not_found")
        if not self.settings.swap_on_request and idle:
            return None, (
                400,
                f"model '{profile.id}' is not running and swap_on_request is off; "
                f"running: {running or 'none'}",
                "invalid_request_error",
            )
        return profile.id, None

    def _find(self, name: str) -> Profile | None:
        try:
            return self.supervisor.config.resolve(name)
        except UsageError:
            return None

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        headers: Headers,
        body: bytes,
        model_id: str | None,
        received: float,
        entry: Entry | None,
        keep_alive: float | None,
    ) -> None:
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        forwarded = [(k, v) for k, v in headers.items() if k not in NOT_FORWARDED]
        request = Upstream(scope["method"], target, forwarded, body, received, entry, keep_alive)
        try:
            async with self.upstream(model_id, request) as exchange:
                with contextlib.suppress(aiohttp.ClientError):
                    # llama-server broke off, or was silent past upstream_timeout: the
                    # response ends without its last chunk, so the client sees it cut short.
                    exchange.first_byte = await _relay(exchange.response, send, exchange.model.id)
        except UpstreamError as error:
            await _error(
                send, error.status, str(error), error.kind, error.code, extra_headers=error.headers
            )

    @contextlib.asynccontextmanager
    async def upstream(self, model_id: str | None, request: Upstream) -> AsyncIterator[Exchange]:
        """llama-server's response to `request`, from the model for `model_id` (None: the
        current one), held in flight through the supervisor (swaps, the queue) while the
        caller reads it. What stops it from being answered raises UpstreamError, for the
        caller to answer in its API's shape."""
        try:
            async with self.supervisor.serving(model_id, request.keep_alive) as model:
                assert model.server is not None
                if request.entry:
                    request.entry.model = model.id
                    request.entry.wait_s = time.monotonic() - request.received
                await self.supervisor.kv.before_request(
                    model.profile, model.server, request.target, request.body, self.settings
                )
                url = model.server.url + request.target
                headers = request.headers + list(auth_headers(model.server.api_key).items())
                try:
                    response = await self._send(request.method, url, headers, request.body)
                except aiohttp.ServerTimeoutError:
                    waited = f"{self.settings.upstream_timeout:g}s"
                    message = f"llama-server sent nothing for {waited} ([server] upstream_timeout)"
                    raise UpstreamError(504, message) from None
                except aiohttp.ClientError as error:
                    raise UpstreamError(502, f"llama-server did not answer: {error}") from None
                exchange = Exchange(model, response)
                try:
                    yield exchange
                finally:
                    # Closing (not releasing) drops the connection: when the client left
                    # or llama-server went silent, that is what stops its generating.
                    if response.content.at_eof():
                        response.release()
                    else:
                        response.close()
                    if self.metrics:
                        first = exchange.first_byte
                        ttfb = first - request.received if first else None
                        path = request.target.split("?", 1)[0]
                        self.metrics.request_done(model.id, response.status, ttfb, path=path)
        except Busy as error:  # worth retrying soon: the queue moves
            raise UpstreamError(
                503, str(error), "overloaded_error", headers=[(b"retry-after", b"5")]
            ) from None
        except UsageError as error:  # its GGUF is missing: "model file not found ..."
            message = str(error)
            raise UpstreamError(404, message, "invalid_request_error", "model_not_found") from None
        except Unavailable as error:
            # No Retry-After: a model that failed to start fails the same way until its
            # file or profile changes, or retry_failed_after passes.
            raise UpstreamError(503, str(error)) from None

    async def _send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> aiohttp.ClientResponse:
        """Send upstream; once more on a fresh connection when a kept-alive one turns out
        closed before any response byte (llama-server drops idle connections; the
        failure shows as a disconnect or as a request body that could not be written).
        When the retry fails too, the first failure is the news: a llama-server that died
        mid-request would otherwise read as "Cannot connect".

        A read timeout (`upstream_timeout`, seconds without a byte) bounds a hung server."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.settings.upstream_timeout)

        async def request() -> aiohttp.ClientResponse:
            data = body or None
            return await self.http.request(method, url, headers=headers, data=data, timeout=timeout)

        try:
            return await request()
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as first:
            try:
                return await request()
            except aiohttp.ServerTimeoutError:
                raise
            except aiohttp.ClientError as second:
                raise aiohttp.ClientError(
                    f"{first} (retried on a fresh connection: {second})"
                ) from second


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _requested_model(scope: Scope, body: bytes) -> str | None:
    """`model` from a body that is a JSON object, whatever its content type (llama-server
    parses any), else from the query string."""
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            return data["model"]
    return QueryParams(scope.get("query_string", b"")).get("model")


async def _unless_client_leaves(answer: Awaitable[None], receive: Receive) -> bool:
    """Answer the request, or stop answering the moment the client leaves: the answer is
    cancelled wherever it is (waiting for its model, for llama-server's headers,
    mid-stream), which releases the request and closes its upstream connection.
    True when the client left before the answer was complete."""
    answering = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait({answering, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answering, gone):
            task.cancel()  # no-op for the one that finished
        await asyncio.gather(answering, gone, return_exceptions=True)
    if not answering.cancelled():
        answering.result()  # the answer's own error, if any
    return answering.cancelled()


async def _relay(upstream: aiohttp.ClientResponse, send: Send, model: str) -> float | None:
    """Relay the upstream response; returns when the first body byte went out."""
    headers = [(k, v) for k, v in upstream.raw_headers if k.lower() not in HOP_BY_HOP_BYTES]
    headers.append((b"x-herd-model", model.encode()))  # which profile answered
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    first_byte = None
    async for chunk in upstream.content.iter_any():
        first_byte = first_byte or time.monotonic()
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return first_byte


async def _stream(send: Send, chunks: AsyncIterator[bytes]) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _error(
    send: Send,
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    *,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """An error in the OpenAI shape ({"error": {...}}), which Anthropic clients read too."""
    error = {"message": message, "type": kind, "code": code or status}
    await send_json(send, status, {"error": error}, extra_headers)

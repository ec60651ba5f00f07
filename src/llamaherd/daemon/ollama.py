"""Ollama's API on the gateway, for the clients that speak only it (IDE plugins, apps):
`GET /api/version|tags|ps`, `POST /api/show|chat|generate|embed|embeddings`. Generating
and embedding requests go through the gateway's `upstream` like any other (the
supervisor's swaps, queue, in-flight count, activity records, metrics), translated to
llama-server's OpenAI API and back (daemon/ollama_shapes.py). `keep_alive` sets how long
the model stays after the request (daemon/lifetime.py); an empty prompt loads the model,
with `keep_alive: 0` unloads it, as Ollama does.

Errors are Ollama's `{"error": "..."}`. Endpoints that manage Ollama's model store
(pull, push, create, copy, delete) say what herd does instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from starlette.types import Scope, Send

from llamaherd.config import Profile
from llamaherd.daemon import lifetime
from llamaherd.daemon import ollama_shapes as shapes
from llamaherd.daemon.activity import Entry
from llamaherd.daemon.memory import CPU
from llamaherd.daemon.model import State
from llamaherd.daemon.upstream import Exchange, Upstream, UpstreamError, send_json
from llamaherd.errors import UsageError
from llamaherd.gguf import budget
from llamaherd.gguf.header import ModelInfo
from llamaherd.schema.ollama import (
    OllamaChatChunk,
    OllamaChatRequest,
    OllamaDetails,
    OllamaEmbed,
    OllamaEmbedding,
    OllamaEmbedRequest,
    OllamaGenerateChunk,
    OllamaGenerateRequest,
    OllamaMessage,
    OllamaPs,
    OllamaRunning,
    OllamaShow,
    OllamaShowRequest,
    OllamaTag,
    OllamaTags,
    OllamaVersion,
)

if TYPE_CHECKING:
    from llamaherd.daemon.gateway import Gateway

log = logging.getLogger(__name__)

# The Ollama release whose API docs these answers follow (clients check a minimum).
OLLAMA_VERSION = "0.13.0"
FOREVER_S = 2**63 / 1e9  # Ollama's expiry for keep_alive -1: its longest duration
JSON_HEADERS = [("content-type", "application/json")]
UNSUPPORTED = {
    "/api/pull": "herd does not pull from Ollama's library: download a GGUF and add its "
    "profile with `herd add REPO[:QUANT]` (Hugging Face) or `herd add FILE.gguf`",
    "/api/push": "herd does not push models: its models are GGUF files named in herd.toml",
    "/api/create": "herd has no Modelfiles: add a profile to herd.toml (`herd add`), with "
    "llama-server flags in `args` and sampling defaults in `[models.ID.sampling]`",
    "/api/copy": "herd has no model store to copy in: add a profile with "
    '`extends = "ID"` in herd.toml, or an alias (`aliases = [...]`)',
    "/api/delete": "herd does not delete models: remove the profile from herd.toml "
    "(`herd reload` applies it) and the GGUF file yourself",
}
Request = TypeVar("Request", bound=BaseModel)


class OllamaError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OllamaApi:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def config(self) -> Any:
        return self.gateway.supervisor.config

    async def answer(
        self, scope: Scope, send: Send, body: bytes, received: float, entry: Entry | None
    ) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        try:
            if path in UNSUPPORTED or path.startswith("/api/blobs"):
                raise OllamaError(501, UNSUPPORTED.get(path, UNSUPPORTED["/api/create"]))
            if method in ("GET", "HEAD") and path == "/api/version":
                await _send(send, OllamaVersion(version=OLLAMA_VERSION))
            elif method == "GET" and path == "/api/tags":
                await _send(send, await asyncio.to_thread(self.tags))
            elif method == "GET" and path == "/api/ps":
                await _send(send, await asyncio.to_thread(self.ps))
            elif method == "POST" and path == "/api/show":
                await _send(send, await asyncio.to_thread(self.show, body))
            elif method == "POST" and path in ("/api/chat", "/api/generate"):
                await self.generate(send, body, received, entry, chat=path == "/api/chat")
            elif method == "POST" and path in ("/api/embed", "/api/embeddings"):
                await self.embed(send, body, received, entry, legacy=path == "/api/embeddings")
            else:
                raise OllamaError(404, f"{method} {path} is not an Ollama endpoint herd serves")
        except OllamaError as error:
            await _error(send, error.status, str(error))
        except UpstreamError as error:
            await _error(send, error.status, str(error), error.headers)
        except (shapes.ShapeError, lifetime.LifetimeError) as error:
            await _error(send, 400, str(error))

    # -- listing ---------------------------------------------------------------
    def tags(self) -> OllamaTags:
        """Every profile whose GGUF is on disk (a missing one could not answer)."""
        rows = []
        for profile in self.config.models.values():
            info = budget.read_cached(profile)
            if info is None:
                continue
            rows.append(
                OllamaTag(
                    name=profile.id,
                    model=profile.id,
                    modified_at=shapes.iso_at(profile.file.stat().st_mtime),
                    size=info.file_size,
                    digest=_digest(profile),
                    details=_details(info),
                )
            )
        return OllamaTags(models=rows)

    def ps(self) -> OllamaPs:
        rows = []
        for model in list(self.gateway.supervisor.models.values()):
            if model.state != State.READY:
                continue
            info = budget.read_cached(model.profile)
            footprint = model.placement.footprint if model.placement else {}
            ttl = model.ttl
            left = FOREVER_S if ttl is None or ttl == math.inf else ttl
            left = max(0.0, model.last_used + left - time.monotonic())
            rows.append(
                OllamaRunning(
                    name=model.id,
                    model=model.id,
                    size=sum(footprint.values()) or (info.file_size if info else 0),
                    size_vram=sum(n for device, n in footprint.items() if device != CPU),
                    digest=_digest(model.profile),
                    details=_details(info),
                    expires_at=shapes.iso_at(time.time() + left),
                    context_length=model.profile.ctx or (info.context_length if info else None),
                )
            )
        return OllamaPs(models=rows)

    def show(self, body: bytes) -> OllamaShow:
        request = _parse(OllamaShowRequest, body)
        profile = self._profile(request.model or request.name or "")
        info = budget.read_cached(profile)
        if info is None:
            raise OllamaError(404, f"model file not found: {profile.file}")
        params = {k: v for k, v in profile.sampling.model_dump().items() if v is not None}
        if profile.ctx:
            params["num_ctx"] = profile.ctx
        parameters = "\n".join(f"{k:<30} {v}" for k, v in params.items())
        modelfile = f"# herd profile {profile.id}\nFROM {profile.file}\n" + "".join(
            f"PARAMETER {k} {v}\n" for k, v in params.items()
        )
        arch = info.architecture
        model_info = {
            "general.architecture": arch,
            "general.name": info.name or profile.id,
            "general.parameter_count": info.n_params,
            f"{arch}.block_count": info.n_layer,
            f"{arch}.context_length": info.context_length,
            f"{arch}.embedding_length": info.n_embd,
            f"{arch}.attention.head_count": info.n_head,
        }
        capabilities = ["completion"]
        if info.chat_template:
            capabilities.append("tools")  # llama-server parses tool calls from its template
        if shapes.has_projector(profile.args):
            capabilities.append("vision")
        if "--embeddings" in profile.args or "--embedding" in profile.args:
            capabilities.append("embedding")
        return OllamaShow(
            modelfile=modelfile,
            parameters=parameters,
            template="",  # llama-server applies the GGUF's own chat template
            details=_details(info),
            model_info={k: v for k, v in model_info.items() if v is not None},
            capabilities=capabilities,
            modified_at=shapes.iso_at(profile.file.stat().st_mtime),
        )

    # -- generating ------------------------------------------------------------
    async def generate(
        self, send: Send, body: bytes, received: float, entry: Entry | None, *, chat: bool
    ) -> None:
        request: OllamaChatRequest | OllamaGenerateRequest
        request = _parse(OllamaChatRequest, body) if chat else _parse(OllamaGenerateRequest, body)
        profile, model_id, keep_alive = self._target(request.model, request.keep_alive, entry)
        empty = (
            not request.messages
            if isinstance(request, OllamaChatRequest)
            else not (request.prompt or request.images)
        )
        if empty:  # Ollama's way to load a model, or with keep_alive 0 to unload it
            await self._load(send, request, profile, model_id, keep_alive, received, entry)
            return
        if isinstance(request, OllamaChatRequest):
            path = "/v1/chat/completions"
            payload, ignored = shapes.chat_body(request, profile.args)
        else:
            path, payload, ignored = shapes.generate_body(request, profile.args)
        notes = [(b"x-herd-ignored-options", ",".join(ignored).encode())] if ignored else []
        if ignored:
            log.info("%s: options ignored (set in herd.toml instead): %s", request.model, ignored)
        upstream = Upstream(
            "POST", path, JSON_HEADERS, json.dumps(payload).encode(), received, entry, keep_alive
        )
        async with self.gateway.upstream(model_id, upstream) as exchange:
            if exchange.response.status != 200:
                await _upstream_error(send, exchange)
            elif request.stream:
                await _stream(send, exchange, request.model, chat, upstream, notes)
            else:
                data = await exchange.response.json(content_type=None)
                if entry:
                    entry.usage.record(data)
                choice = (data.get("choices") or [{}])[0]
                message = choice.get("message") or {}
                text = choice.get("text") if "text" in choice else message.get("content")
                final = {
                    "model": request.model,
                    "created_at": shapes.now_iso(),
                    "done": True,
                    "done_reason": shapes.done_reason(choice.get("finish_reason")),
                    **shapes.stats(data, received, _waited(entry, received)),
                }
                answer: OllamaChatChunk | OllamaGenerateChunk
                if chat:
                    answer = OllamaChatChunk(
                        **final,
                        message=OllamaMessage(
                            role="assistant",
                            content=text or "",
                            thinking=message.get("reasoning_content"),
                            tool_calls=shapes.tool_calls(message.get("tool_calls")),
                        ),
                    )
                else:
                    thinking = message.get("reasoning_content")
                    answer = OllamaGenerateChunk(**final, response=text or "", thinking=thinking)
                await _send(send, answer, notes)

    async def _load(
        self,
        send: Send,
        request: OllamaChatRequest | OllamaGenerateRequest,
        profile: Profile,
        model_id: str | None,
        keep_alive: float | None,
        received: float,
        entry: Entry | None,
    ) -> None:
        if keep_alive == 0:
            if self.gateway.supervisor.state_of(profile.id) != State.STOPPED:
                await self.gateway.supervisor.stop(profile.id)
            reason = "unload"
        else:
            check = Upstream("GET", "/health", [], b"", received, entry, keep_alive)
            async with self.gateway.upstream(model_id, check):
                pass
            reason = "load"
        fields = {"model": request.model, "created_at": shapes.now_iso(), "done": True}
        if isinstance(request, OllamaChatRequest):
            message = OllamaMessage(role="assistant", content="")
            await _send(send, OllamaChatChunk(**fields, done_reason=reason, message=message))
        else:
            await _send(send, OllamaGenerateChunk(**fields, done_reason=reason, response=""))

    async def embed(
        self, send: Send, body: bytes, received: float, entry: Entry | None, *, legacy: bool
    ) -> None:
        request = _parse(OllamaEmbedRequest, body)
        _, model_id, keep_alive = self._target(request.model, request.keep_alive, entry)
        given = request.prompt if legacy else request.input
        inputs = [given] if isinstance(given, str) else list(given or [])
        if not inputs or inputs == [""]:  # Ollama answers an empty input with no vectors
            empty = OllamaEmbedding(embedding=[]) if legacy else None
            await _send(send, empty or OllamaEmbed(model=request.model, embeddings=[]))
            return
        payload = json.dumps({"input": inputs}).encode()
        upstream = Upstream(
            "POST", "/v1/embeddings", JSON_HEADERS, payload, received, entry, keep_alive
        )
        async with self.gateway.upstream(model_id, upstream) as exchange:
            if exchange.response.status != 200:
                await _upstream_error(send, exchange)
                return
            data = await exchange.response.json(content_type=None)
        rows = sorted(data.get("data") or [], key=lambda row: row.get("index", 0))
        vectors = [shapes.truncate(row["embedding"], request.dimensions) for row in rows]
        if legacy:
            await _send(send, OllamaEmbedding(embedding=vectors[0]))
            return
        usage = data.get("usage") or {}
        answer = OllamaEmbed(
            model=request.model,
            embeddings=vectors,
            total_duration=int((time.monotonic() - received) * 1e9),
            load_duration=int(_waited(entry, received) * 1e9),
            prompt_eval_count=usage.get("prompt_tokens"),
        )
        await _send(send, answer)

    # -- helpers ---------------------------------------------------------------
    def _profile(self, name: str) -> Profile:
        """The profile an Ollama model name means (`ID` or `ID:latest`, or an alias)."""
        for candidate in dict.fromkeys((name, name.removesuffix(":latest"))):
            try:
                return self.config.resolve(candidate)
            except UsageError:
                continue
        known = ", ".join(self.config.models) or "none"
        raise OllamaError(
            404, f"model '{name}' not found; herd's profiles: {known} (`herd add` adds one)"
        )

    def _target(
        self, name: str, keep_alive: float | str | None, entry: Entry | None
    ) -> tuple[Profile, str | None, float | None]:
        """The profile, the model id to serve with, and the lifetime asked for."""
        if entry:
            entry.requested = name
        profile = self._profile(name)
        model_id, problem = self.gateway.choose(profile.id)
        if problem:
            raise OllamaError(problem[0], problem[1])
        seconds = None if keep_alive is None else lifetime.parse(keep_alive)
        return profile, model_id, seconds


def _parse(kind: type[Request], body: bytes) -> Request:
    try:
        return kind.model_validate_json(body or b"{}")
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "body"
        raise OllamaError(400, f"{where}: {problem['msg']}") from None


def _details(info: ModelInfo | None) -> OllamaDetails:
    if info is None:
        return OllamaDetails()
    return OllamaDetails(
        family=info.architecture,
        families=[info.architecture],
        parameter_size=shapes.parameter_size(info.n_params),
        quantization_level=info.file_type or "",
    )


def _digest(profile: Profile) -> str:
    """An identity of the GGUF (path, size, mtime), not a hash of its gigabytes."""
    stat = profile.file.stat()
    return hashlib.sha256(f"{profile.file}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()


def _waited(entry: Entry | None, received: float) -> float:
    return entry.wait_s if entry and entry.wait_s is not None else 0.0


async def _stream(
    send: Send,
    exchange: Exchange,
    name: str,
    chat: bool,
    upstream: Upstream,
    notes: list[tuple[bytes, bytes]],
) -> None:
    """llama-server's event stream as Ollama's NDJSON: a line per piece of text, then a
    last line with `done`, the reason and the figures (tool calls gathered into it)."""
    headers = [(b"content-type", b"application/x-ndjson"), *notes]
    headers.append((b"x-herd-model", exchange.model.id.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    finish, figures = None, {}
    calls: dict[int, dict[str, Any]] = {}

    async def line(chunk: OllamaChatChunk | OllamaGenerateChunk) -> None:
        exchange.first_byte = exchange.first_byte or time.monotonic()
        body = chunk.model_dump_json(exclude_none=True).encode() + b"\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})

    def piece(
        content: str, thinking: str | None = None, tool_calls: Any = None, **final: Any
    ) -> OllamaChatChunk | OllamaGenerateChunk:
        fields = {"model": name, "created_at": shapes.now_iso(), "done": False, **final}
        if chat:
            message = OllamaMessage(
                role="assistant", content=content, thinking=thinking, tool_calls=tool_calls
            )
            return OllamaChatChunk(**fields, message=message)
        return OllamaGenerateChunk(**fields, response=content, thinking=thinking)

    try:
        async for raw in exchange.response.content:
            text = raw.strip()
            if not text.startswith(b"data:"):
                continue
            if (payload := text[5:].strip()) == b"[DONE]":
                break
            data = json.loads(payload)
            if data.get("usage") or data.get("timings"):
                figures = data
            for choice in data.get("choices") or []:
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta") or {}
                content = delta.get("content") or choice.get("text") or ""
                thinking = delta.get("reasoning_content")
                for call in delta.get("tool_calls") or []:
                    gathered = calls.setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                    function = call.get("function") or {}
                    gathered["name"] += function.get("name") or ""
                    gathered["arguments"] += function.get("arguments") or ""
                if content or thinking:
                    await line(piece(content, thinking))
    except (aiohttp.ClientError, ValueError) as error:
        log.warning("%s: the stream from llama-server broke off: %s", name, error)
    if upstream.entry and figures:
        upstream.entry.usage.record(figures)
    waited = _waited(upstream.entry, upstream.received)
    gathered_calls = shapes.tool_calls([{"function": c} for c in calls.values()])
    last = piece(
        "",
        done=True,
        done_reason=shapes.done_reason(finish),
        tool_calls=gathered_calls,
        **shapes.stats(figures, upstream.received, waited),
    )
    await line(last)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _upstream_error(send: Send, exchange: Exchange) -> None:
    """llama-server's error, passed on as Ollama's, with herd's hint where there is one."""
    raw = await exchange.response.read()
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, LookupError, TypeError):
        message = raw.decode("utf-8", "replace").strip() or exchange.response.reason or "error"
    if "--embeddings" in message:
        message += (
            f' (herd: add "--embeddings" (and "--pooling", "mean" for a chat model) to the '
            f"args of profile '{exchange.model.id}' in herd.toml)"
        )
    await _error(send, exchange.response.status, f"llama-server: {message}")


async def _send(send: Send, answer: BaseModel, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send_json(send, 200, answer.model_dump(exclude_none=True), headers)


async def _error(
    send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_json(send, status, {"error": message}, headers)

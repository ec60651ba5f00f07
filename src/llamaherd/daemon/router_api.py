"""The llama.cpp router's model API on the gateway: what llama-server's web UI and Open
WebUI read to list models, see which are loaded and load or unload them.

- `GET /models`, `GET /v1/models`: every profile in the router's shape (schema/router.py):
  `status.value` loaded / loading / unloaded (a failed model: unloaded, `failed: true`),
  `status.args` its llama-server command line, aliases.
- `POST /models/load {"model": ID}`: a switch through the supervisor, answered at once
  as the router does; `POST /models/unload`: that model stopped.
- `GET /models/sse`: `data: {"model", "event", "data": {"status", "progress"}}` records,
  from the supervisor's events.
- `GET /props?autoload=...` without `model`: the router's own props (`role: "router"`),
  which is what turns the web UI's model list on. Only a router-aware client sends
  `autoload`; a plain `GET /props` still reaches the running llama-server.

The gateway calls `answer`; None means the request is not this API's and is forwarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.types import Scope

from llamaherd import __version__, profiles
from llamaherd.config import Profile
from llamaherd.daemon.model import State
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.errors import UsageError
from llamaherd.runtime import auth_headers
from llamaherd.runtime.argv import server_argv
from llamaherd.schema.router import (
    LoadProgress,
    RouterDone,
    RouterEvent,
    RouterEventData,
    RouterLoad,
    RouterModel,
    RouterModelList,
    RouterStatus,
)

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
META_TIMEOUT_S = 2.0
VALUES = {State.READY: "loaded", State.STARTING: "loading"}  # anything else: unloaded

# A JSON answer (status, body), or an event stream.
Reply = tuple[int, dict] | AsyncIterator[bytes]


class RouterError(Exception):
    """An error answer in the router's (OpenAI's) shape; the gateway sends it."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class RouterApi:
    def __init__(self, supervisor: Supervisor, http: Callable[[], aiohttp.ClientSession]) -> None:
        self.supervisor = supervisor
        self.http = http  # the gateway's upstream session
        self._meta: dict[tuple[str, int], dict] = {}  # (model, pid) -> llama-server's meta
        self._loads: set[asyncio.Task[Any]] = set()

    async def answer(self, scope: Scope, body: bytes) -> Reply | None:
        """The answer to a router API request; None when the request is not one."""
        method, path = scope["method"], scope["path"]
        query = QueryParams(scope.get("query_string", b""))
        if method == "GET" and path in ("/models", "/v1/models"):
            return 200, (await self.models()).model_dump(exclude_none=True)
        if method == "POST" and path in ("/models/load", "/models/unload"):
            profile = self._profile(_load_body(body).model)
            done = self._load(profile) if path == "/models/load" else await self._unload(profile)
            return 200, done.model_dump()
        if method == "GET" and path == "/models/sse":
            return self.events()
        if method == "GET" and path == "/props" and "autoload" in query:
            return self._props(query)
        return None

    async def models(self) -> RouterModelList:
        config = self.supervisor.config
        rows = [self._row(p) for p in config.models.values()]
        await asyncio.gather(*(self._add_meta(row) for row in rows if row.state == "ready"))
        return RouterModelList(data=rows)

    def _row(self, profile: Profile) -> RouterModel:
        supervisor = self.supervisor
        model = supervisor.models.get(profile.id)
        running = supervisor.state_of(profile.id)
        state = profiles.describe(profile, state=str(running)).state  # or "missing"
        args = model.server.argv if model and model.server else self._argv(profile)
        status = RouterStatus(
            value=VALUES.get(running, "unloaded"),
            args=args,
            preset=_preset(profile.id, args),
        )
        failure = model.failure if model else None
        if state == "failed" and failure is not None:
            status.failed, status.exit_code, status.error = True, 1, failure.reason
        elif state == "missing":
            status.error = f"model file not found: {profile.file}"
        return RouterModel(
            id=profile.id,
            aliases=profile.aliases,
            created=int(time.time()),
            status=status,
            name=profile.name,
            state=state,
        )

    def _argv(self, profile: Profile) -> list[str]:
        host = "127.0.0.1"
        return server_argv(self.supervisor.llama_server, profile, host=host, port=0)

    async def _add_meta(self, row: RouterModel) -> None:
        """The running llama-server's `meta` (n_ctx, n_params ...), as the router merges it
        into a loaded model's row; asked once per server."""
        model = self.supervisor.models.get(row.id)
        if model is None or model.server is None:
            return
        key = (row.id, model.server.pid)
        if key not in self._meta:
            try:
                timeout = aiohttp.ClientTimeout(total=META_TIMEOUT_S)
                headers = auth_headers(model.server.api_key)
                url = f"{model.server.url}/v1/models"
                async with self.http().get(url, headers=headers, timeout=timeout) as response:
                    listed = await response.json(content_type=None)
                self._meta[key] = listed["data"][0].get("meta") or {}
            except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError):
                return  # not answering yet: the next listing asks again
        row.meta = self._meta[key]

    def _profile(self, name: str) -> Profile:
        try:
            return self.supervisor.config.resolve(name)
        except UsageError as error:
            raise RouterError(404, str(error), "not_found_error") from None

    def _load(self, profile: Profile) -> RouterDone:
        """Start the switch and answer at once, as the router does: /models/sse and
        /models tell how it goes."""
        if self.supervisor.state_of(profile.id) in (State.READY, State.STARTING):
            raise RouterError(400, "model is already running")
        task = asyncio.ensure_future(self._switch(profile.id))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)
        return RouterDone()

    async def _switch(self, model_id: str) -> None:
        try:
            result = await self.supervisor.switch(model_id)
        except UsageError as error:  # its file went: the failure is logged, as the router's
            log.warning("POST /models/load %s: %s", model_id, error)
            return
        if not result.ok:
            log.warning("POST /models/load %s failed: %s", model_id, result.error)

    async def _unload(self, profile: Profile) -> RouterDone:
        if self.supervisor.state_of(profile.id) in (State.STOPPED, State.FAILED):
            raise RouterError(400, "model is not running")
        await self.supervisor.stop(profile.id)
        return RouterDone()

    def _props(self, query: QueryParams) -> Reply | None:
        """The router's own /props; with `model`, that model's (forwarded) when it runs,
        else the router's "model is not loaded" unless autoload asks for a start."""
        name = query.get("model")
        if name is None:
            return 200, {
                "role": "router",
                "max_instances": len(self.supervisor.config.models),
                "models_autoload": self.supervisor.config.server.swap_on_request,
                "model_alias": "llamaherd",
                "model_path": "none",
                "default_generation_settings": {"params": None, "n_ctx": 0},
                "ui_settings": {},
                "build_info": f"llamaherd {__version__}",
                "cors_proxy_enabled": False,
            }
        autoload = query.get("autoload") in ("true", "1")
        if not autoload and self.supervisor.state_of(self._profile(name).id) != State.READY:
            raise RouterError(400, "model is not loaded")
        return None

    async def events(self) -> AsyncIterator[bytes]:
        """The router's /models/sse: one `data:` record per state change or load step."""
        with self.supervisor.events.subscribe() as queue:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                record = _router_event(event)
                if record is not None:
                    yield f"data: {record.model_dump_json(exclude_none=True)}\n\n".encode()


def _router_event(event: dict) -> RouterEvent | None:
    """A supervisor event as the router would have told it, or None (no counterpart)."""
    kind, model, state = event["type"], event.get("model", ""), event.get("state")
    if kind == "reload":
        return RouterEvent(model="*", event="models_reload")
    if kind == "loading":
        data = RouterEventData(status="loading", progress=_progress(event.get("progress")))
    elif kind != "state" or state == "stopping":
        return None
    elif state == "starting":  # the router's first word on a load
        loading = RouterEventData(status="loading")
        return RouterEvent(model=model, event="model_status", data=loading)
    elif state == "ready":
        data = RouterEventData(status="loaded")
    else:  # stopped, or failed: the router's "unloaded", with a non-zero code when failed
        data = RouterEventData(status="unloaded", exit_code=1 if state == "failed" else 0)
    return RouterEvent(model=model, event="status_change", data=data)


def _progress(progress: object) -> LoadProgress | None:
    """A `loading` event's progress (a 0..1 fraction, or {"fraction": ...}) as the
    router's; None when the event carries none (only the time so far)."""
    if isinstance(progress, dict):
        progress = progress.get("fraction", progress.get("value"))
    if isinstance(progress, int | float):
        return LoadProgress(value=max(0.0, min(1.0, float(progress))))
    return None


def _load_body(body: bytes) -> RouterLoad:
    try:
        return RouterLoad.model_validate(json.loads(body or b"null"))
    except (ValueError, ValidationError):
        shape = '{"model": "<id or alias>"}'
        raise RouterError(400, f"the body must be a JSON object: {shape}") from None


def _preset(model_id: str, args: list[str]) -> str:
    """The command line as the router's INI preset section (`key = value` per option)."""
    lines = [f"[{model_id}]"]
    options = args[1:]
    for i, token in enumerate(options):
        if not _is_option(token):
            continue
        following = options[i + 1] if i + 1 < len(options) else None
        flag = following is None or _is_option(following)
        lines.append(f"{token.lstrip('-')} = {'true' if flag else following}")
    return "\n".join(lines) + "\n\n"


def _is_option(token: str) -> bool:
    """`--ctx-size` or `-m`, not a value such as `-1`."""
    return token.startswith("-") and not token[1:2].isdigit()

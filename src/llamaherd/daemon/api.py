"""The management API (default 127.0.0.1:8081): every client of the daemon talks to this.

The answers' shapes are the models in llamaherd/schema.py, declared on each route, so
/openapi.json (and the interactive docs at /docs) show them; docs/api.md says what the
fields mean.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamaherd import __version__, profiles, schema
from llamaherd.daemon import console, scheduler
from llamaherd.daemon.activity import ActivityLog
from llamaherd.daemon.auth import key_matches
from llamaherd.daemon.events import sse
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.model import State
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.errors import ConfigError, UsageError
from llamaherd.gguf import budget
from llamaherd.monitor import Sampler
from llamaherd.schema import activity as activity_shapes

LOG_POLL_INTERVAL = 0.2


class SwitchRequest(BaseModel):
    model: str
    restart: bool = False  # restart even if it is running (e.g. after its profile changed)
    retry: bool = True  # false: a start that failed recently answers with its failure


async def _switch_request(request: Request) -> SwitchRequest:
    """The body as JSON whatever its content type: `curl -d '{"model": ...}'` sends it as a
    form. (Other web origins are refused before this, by daemon/guard.py.) Bad bodies are
    400 `{"error": ...}`, in the original setup's words where it had some."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "invalid JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, 'the body must be a JSON object: {"model": "<id or alias>"}')
    if "model" not in body:
        raise HTTPException(400, 'missing "model" field')
    try:
        return SwitchRequest.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HTTPException(400, f'"{where}": {first["msg"]}') from None


def _json_body(model: type[BaseModel]) -> dict:
    """The OpenAPI requestBody of a route that parses its body itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _error(
    status_code: int, message: str, model: str | None = None, hint: str | None = None
) -> JSONResponse:
    body = schema.ErrorAnswer(error=message, model=model, hint=hint).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status_code)


def _unknown_model(name: str, error: UsageError) -> JSONResponse:
    """404 in the original's words (`unknown model: X`); the config's suggestion ("did
    you mean ...? known: ...") goes in `hint`."""
    message = str(error)
    hint = message.removeprefix(f"unknown model '{name}'; ")
    return _error(404, f"unknown model: {name}", name, hint)


def _status_message(supervisor: Supervisor) -> str:
    """The original setup's `status`: "" when the current model serves, else what a
    person should read (the failure reason when it failed)."""
    current = supervisor.current
    state = supervisor.state_of(current) if current else State.STOPPED
    failure = supervisor.last_error
    if state == State.READY:
        return ""
    if state == State.STARTING:
        return "loading"
    if failure and failure.model == current and state in (State.FAILED, State.STOPPED):
        return failure.reason
    return "no model loaded" if current is None else str(state)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route's error answers."""
    return {code: {"model": schema.ErrorAnswer} for code in codes}


def create_app(
    supervisor: Supervisor,
    metrics: Metrics,
    *,
    on_shutdown: Callable[[], None],
    on_reload: Callable[[], dict],
    sampler: Sampler | None = None,
    activity: ActivityLog | None = None,
) -> FastAPI:
    """Build the API around one supervisor. `on_shutdown` stops the daemon (POST /shutdown);
    `on_reload` re-reads herd.toml (POST /reload) and raises ConfigError when it is bad;
    `sampler` is the daemon's running sampler that GET /system reads; `activity` the
    gateway's activity log that GET /activity reads."""
    app = FastAPI(title="llamaherd management API", version=__version__)
    started_at = time.time()

    @app.exception_handler(StarletteHTTPException)
    async def plain_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Every error is `{"error": ...}`, routing's own too: an unknown path is
        # 404 {"error": "not found"}, as the original setup answered.
        phrase = HTTPStatus(error.status_code).phrase
        message = phrase.lower() if error.detail == phrase else str(error.detail)
        body = schema.ErrorAnswer(error=message).model_dump(exclude_none=True)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # 400 {"error": ...} like every other answer, not FastAPI's 422 {"detail": [...]}.
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or str(first["loc"][0])
        return _error(400, f'"{where}": {first["msg"]}')

    @app.middleware("http")
    async def require_key(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Read per request, so a reload that sets or changes the key applies at once.
        # /health stays open so supervisors and load balancers can probe; the console's
        # page holds no data (its calls carry the key).
        expected = supervisor.config.server.api_key
        open_path = request.url.path == "/health" or console.is_open(request.url.path)
        if expected and not open_path and not key_matches(request.headers, expected):
            return _error(401, "missing or wrong API key")
        return await call_next(request)

    @app.get("/health")
    async def health() -> schema.Health:
        return schema.Health()

    @app.get("/models")
    async def models() -> schema.ModelList:
        config = supervisor.config
        listed = list(config.models.values())
        memory = await asyncio.to_thread(lambda: budget.summaries(listed, supervisor.memory.gpus()))
        states = {p.id: str(supervisor.state_of(p.id)) for p in listed}
        rows = profiles.describe_all(
            listed, states=states, memory=memory, current=supervisor.current
        )
        return schema.ModelList(models=rows)

    @app.get("/status")
    async def status() -> schema.Status:
        config = supervisor.config
        daemon = schema.Daemon(
            pid=os.getpid(),
            version=__version__,
            config=str(config.path) if config.path else None,
            url=config.server.public_url,
            api_url=config.server.api_url,
            started_at=started_at,
            uptime_s=round(time.time() - started_at, 1),
            llama_server=str(supervisor.llama_server),
        )
        current = config.models.get(supervisor.current or "")
        return schema.Status.model_validate(
            {
                "daemon": daemon,
                **supervisor.status(),
                "model_name": current.name if current else None,
                "status": _status_message(supervisor),
            }
        )

    @app.post(
        "/switch",
        response_model=schema.SwitchReply,
        responses=_errors(400, 404),
        openapi_extra=_json_body(SwitchRequest),
    )
    async def switch(
        request: Annotated[SwitchRequest, Depends(_switch_request)],
    ) -> schema.SwitchReply | JSONResponse:
        """200 whether the model started or not (`ok`/`success` tell), as the original
        setup answered: a script reads one shape."""
        try:
            supervisor.config.resolve(request.model)
        except UsageError as error:
            return _unknown_model(request.model, error)
        try:
            result = await supervisor.switch(
                request.model, restart=request.restart, retry=request.retry
            )
        except UsageError as error:  # known, but it cannot be started as it is
            return _error(404, str(error), request.model)
        if result.ok:
            return schema.SwitchReply(schema.SwitchDone.model_validate(supervisor.status()))
        failed = schema.SwitchFailed(
            model=result.model,
            error=result.error,
            restored=result.restored,
            log_tail=result.log_tail,
            status=schema.HerdState.model_validate(supervisor.status()),
        )
        return schema.SwitchReply(failed)

    @app.post("/admission", response_model=schema.Admission, responses=_errors(400, 404))
    async def admission(query: schema.AdmissionQuery) -> schema.Admission | JSONResponse:
        """Whether a profile (or a GGUF file) fits beside the running models, and what
        would be evicted or waited for: the scheduler's answer, nothing is started."""
        try:
            profile = scheduler.profile_for(supervisor.config, query)
        except UsageError as error:
            if query.model:
                return _unknown_model(query.model, error)
            return _error(400, str(error))
        running = [m for m in supervisor.models.values() if m.server and m.id != profile.id]
        room = await scheduler.admit(profile, running, supervisor.memory, supervisor.config.server)
        placed = room.placed if room.placed and not room.evict else None
        where = room.placed or supervisor.memory.alone(profile)
        return schema.Admission(
            model=profile.id,
            fits=placed is not None,
            need=where.footprint,
            gpus=list(where.gpus) if where.gpus is not None else None,
            evict=[r.id for r in room.evict],
            wait_for=[r.id for r in room.wait_for],
            refused=room.refused,
            devices=[schema.Device.model_validate(d) for d in supervisor.memory.devices(running)],
        )

    @app.post("/stop", response_model=schema.Stopped, responses=_errors(404))
    async def stop(model: str | None = None) -> schema.Stopped | JSONResponse:
        """Stop every model, or only `?model=<id>`."""
        try:
            model_id = supervisor.config.resolve(model).id if model else None
        except UsageError as error:
            return _unknown_model(model or "", error)
        return schema.Stopped(stopped=await supervisor.stop(model_id))

    @app.post(
        "/reload",
        response_model=schema.Reloaded,
        responses={400: {"model": schema.ReloadRefused}},
    )
    async def reload() -> schema.Reloaded | JSONResponse:
        try:
            return schema.Reloaded.model_validate(on_reload())
        except ConfigError as error:
            refused = schema.ReloadRefused(error=str(error))
            return JSONResponse(refused.model_dump(exclude_none=True), status_code=400)

    @app.get("/logs")
    async def logs(
        tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
        since: Annotated[int | None, Query(ge=0)] = None,
        model: str | None = None,
    ) -> schema.LogPage:
        return schema.LogPage.model_validate(supervisor.logs(tail, since, model))

    @app.get("/logs/stream")
    async def logs_stream(
        model: str | None = None, tail: Annotated[int, Query(ge=0)] = 0
    ) -> StreamingResponse:
        """New log lines as server-sent events (`event: log`), after `tail` old ones."""
        first = supervisor.logs(tail, None, model)
        seen = first["total"] or 0
        backlog = [{"type": "log", "model": first["model"], "line": x} for x in first["lines"]]

        async def next_line() -> dict:
            nonlocal seen
            while not backlog:
                await asyncio.sleep(LOG_POLL_INTERVAL)
                news = supervisor.logs(100_000, seen, model)
                if news["total"] is not None and news["total"] < seen:
                    seen = 0  # the model restarted: a new log
                    continue
                seen = news["total"] or seen
                backlog.extend(
                    {"type": "log", "model": news["model"], "line": line} for line in news["lines"]
                )
            return backlog.pop(0)

        return StreamingResponse(sse(next_line), media_type="text/event-stream")

    @app.get("/events")
    async def events() -> StreamingResponse:
        """State changes, switches, crashes, restarts, load progress, as server-sent events."""

        async def stream() -> AsyncIterator[bytes]:
            with supervisor.events.subscribe() as queue:
                async for chunk in sse(queue.get):
                    yield chunk

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/metrics")
    async def prometheus() -> Response:
        page = await metrics.render()
        return Response(page, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/system", response_model=schema.SystemSnapshot, responses=_errors(503))
    async def system(
        points: int | None = Query(None, ge=1),
    ) -> schema.SystemSnapshot | JSONResponse:
        """GPUs, host and per-server numbers from the last sample, with a short history
        (its last `points` samples: what a sparkline shows, less to send each second)."""
        if sampler is None:
            return _error(503, "this daemon runs no sampler")
        if not sampler.watch() or sampler.latest is None:  # none yet, or without servers
            await sampler.sample()
        return schema.SystemSnapshot.model_validate(sampler.snapshot(points))

    @app.get(
        "/activity",
        response_model=schema.ActivityPage,
        responses=_errors(400, 503),
    )
    async def activity_page(
        model: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        follow: bool = False,
        format: Literal["json", "csv", "markdown"] = "json",
    ) -> schema.ActivityPage | Response:
        """One record per gateway request, newest first (docs/activity.md). `follow=1`:
        new records as server-sent events instead (as /activity/stream); `format=csv` or
        `markdown`: the page as a table, oldest first."""
        if activity is None:
            return _error(503, "this daemon keeps no activity log")
        if follow:
            return await activity_stream()
        try:
            page = await asyncio.to_thread(
                lambda: activity.page(
                    model=model,
                    status=status,
                    since=since,
                    until=until,
                    before=before,
                    after=after,
                    limit=limit,
                )
            )
        except ValueError as error:  # a bad status filter
            return _error(400, str(error))
        except sqlite3.Error as error:
            return _error(503, f"the activity log cannot be read: {error}")
        if format == "json":
            return page
        write = activity_shapes.to_csv if format == "csv" else activity_shapes.to_markdown
        media = "text/csv" if format == "csv" else "text/markdown"
        return Response(write(page.records[::-1]), media_type=f"{media}; charset=utf-8")

    @app.get("/activity/stream")
    async def activity_stream() -> StreamingResponse:
        """Each new record as a server-sent event (`event: activity`, the record as data)."""
        log = activity

        async def stream() -> AsyncIterator[bytes]:
            if log is None:
                return
            with log.subscribe() as queue:
                async for chunk in sse(queue.get):
                    yield chunk

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/activity/{record}/capture", response_model=schema.Capture, responses=_errors(404))
    async def activity_capture(record: int) -> schema.Capture | JSONResponse:
        """A captured request and response ([server] capture); 404 when it was not
        captured or has left the buffer."""
        kept = activity.capture(record) if activity else None
        if kept is None:
            off = not supervisor.config.server.capture
            hint = "captures are off; set [server] capture = N" if off else None
            return _error(404, f"no capture of request {record}", hint=hint)
        return kept

    console.mount(app, supervisor)  # the web console at /

    @app.post("/shutdown")
    async def shutdown() -> schema.ShuttingDown:
        on_shutdown()
        return schema.ShuttingDown()

    return app

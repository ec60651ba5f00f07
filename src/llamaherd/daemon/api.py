"""The management API (default 127.0.0.1:8081): every client of the daemon talks to this.

Field names are documented in docs/api.md; FastAPI serves the OpenAPI schema at
/openapi.json and interactive docs at /docs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from llamaherd import __version__, profiles
from llamaherd.daemon.auth import key_matches
from llamaherd.daemon.events import sse
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.errors import ConfigError, UsageError
from llamaherd.gguf import budget
from llamaherd.monitor import Sampler

LOG_POLL_INTERVAL = 0.2


class SwitchRequest(BaseModel):
    model: str
    restart: bool = False  # restart even if it is running (e.g. after its profile changed)
    retry: bool = True  # false: a start that failed recently answers with its failure


async def _switch_request(request: Request) -> SwitchRequest:
    """The body as JSON whatever its content type: `curl -d '{"model": ...}'` sends it as a
    form. (Other web origins are refused before this, by daemon/guard.py.)"""
    try:
        return SwitchRequest.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def _json_body(model: type[BaseModel]) -> dict:
    """The OpenAPI requestBody of a route that parses its body itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_app(
    supervisor: Supervisor,
    metrics: Metrics,
    *,
    on_shutdown: Callable[[], None],
    on_reload: Callable[[], dict],
    sampler: Sampler | None = None,
) -> FastAPI:
    """Build the API around one supervisor. `on_shutdown` stops the daemon (POST /shutdown);
    `on_reload` re-reads herd.toml (POST /reload) and raises ConfigError when it is bad;
    `sampler` is the daemon's running sampler that GET /system reads."""
    app = FastAPI(title="llamaherd management API", version=__version__)
    started_at = time.time()

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        # Read per request, so a reload that sets or changes the key applies at once.
        # /health stays open so supervisors and load balancers can probe.
        expected = supervisor.config.server.api_key
        open_path = request.url.path == "/health"
        if expected and not open_path and not key_matches(request.headers, expected):
            return JSONResponse({"error": "missing or wrong API key"}, status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/models")
    async def models() -> dict:
        config = supervisor.config
        listed = list(config.models.values())
        memory = await asyncio.to_thread(lambda: budget.summaries(listed, supervisor.memory.gpus()))
        states = {p.id: str(supervisor.state_of(p.id)) for p in listed}
        return {"models": profiles.describe_all(listed, states=states, memory=memory)}

    @app.get("/status")
    async def status() -> dict:
        config = supervisor.config
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "config": str(config.path) if config.path else None,
                "url": config.server.public_url,
                "api_url": config.server.api_url,
                "started_at": started_at,
                "uptime_s": round(time.time() - started_at, 1),
                "llama_server": str(supervisor.llama_server),
            },
            **supervisor.status(),
        }

    @app.post("/switch", openapi_extra=_json_body(SwitchRequest))
    async def switch(request: Annotated[SwitchRequest, Depends(_switch_request)]) -> JSONResponse:
        try:
            result = await supervisor.switch(
                request.model, restart=request.restart, retry=request.retry
            )
        except UsageError as error:
            return JSONResponse({"error": str(error), "model": request.model}, status_code=404)
        if result.ok:
            return JSONResponse({"ok": True, **supervisor.status()})
        return JSONResponse(
            {
                "ok": False,
                "model": result.model,
                "error": result.error,
                "restored": result.restored,
                "log_tail": result.log_tail,
                "status": supervisor.status(),
            },
            status_code=502,
        )

    @app.post("/stop")
    async def stop(model: str | None = None) -> JSONResponse:
        """Stop every model, or only `?model=<id>`."""
        try:
            model_id = supervisor.config.resolve(model).id if model else None
        except UsageError as error:
            return JSONResponse({"error": str(error), "model": model}, status_code=404)
        return JSONResponse({"stopped": await supervisor.stop(model_id)})

    @app.post("/reload")
    async def reload() -> JSONResponse:
        try:
            return JSONResponse(on_reload())
        except ConfigError as error:
            return JSONResponse({"ok": False, "error": str(error)}, status_code=400)

    @app.get("/logs")
    async def logs(
        tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
        since: Annotated[int | None, Query(ge=0)] = None,
        model: str | None = None,
    ) -> dict:
        return supervisor.logs(tail, since, model)

    @app.get("/logs/stream")
    async def logs_stream(model: str | None = None, tail: Annotated[int, Query(ge=0)] = 0):
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

        async def stream():
            with supervisor.events.subscribe() as queue:
                async for chunk in sse(queue.get):
                    yield chunk

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/metrics")
    async def prometheus() -> Response:
        page = await metrics.render()
        return Response(page, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/system")
    async def system(points: int | None = Query(None, ge=1)) -> JSONResponse:
        """GPUs, host and per-server numbers from the last sample, with a short history
        (its last `points` samples: what a sparkline shows, less to send each second)."""
        if sampler is None:
            return JSONResponse({"error": "this daemon runs no sampler"}, status_code=503)
        if not sampler.watch() or sampler.latest is None:  # none yet, or without servers
            await sampler.sample()
        return JSONResponse(sampler.snapshot(points))

    @app.post("/shutdown")
    async def shutdown() -> dict:
        on_shutdown()
        return {"shutting_down": True}

    return app

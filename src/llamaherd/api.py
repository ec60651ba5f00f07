"""The management API (default 127.0.0.1:8081): every client of the daemon talks to this.

Field names are documented in docs/api.md; FastAPI serves the OpenAPI schema at
/openapi.json and interactive docs at /docs.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from llamaherd import __version__
from llamaherd.auth import key_matches
from llamaherd.errors import UsageError
from llamaherd.supervisor import Supervisor


class SwitchRequest(BaseModel):
    model: str


def create_app(supervisor: Supervisor, *, on_shutdown=None) -> FastAPI:
    """Build the API around one supervisor. `on_shutdown` stops the daemon (POST /shutdown)."""
    app = FastAPI(title="llamaherd management API", version=__version__)
    started_at = time.time()
    config = supervisor.config

    if config.server.api_key:
        expected = config.server.api_key

        @app.middleware("http")
        async def require_key(request: Request, call_next):
            # /health stays open so supervisors and load balancers can probe.
            if request.url.path != "/health" and not key_matches(request.headers, expected):
                return JSONResponse({"error": "missing or wrong API key"}, status_code=401)
            return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/models")
    async def models() -> dict:
        return {
            "models": [
                {
                    "id": p.id,
                    "name": p.name,
                    "aliases": p.aliases,
                    "ctx": p.ctx,
                    "best_for": p.best_for,
                    "file": str(p.file),
                    "state": str(supervisor.state_of(p.id)),
                    "speed_tps": None,  # measured by `herd bench speed` (benchmarks issue)
                }
                for p in config.models.values()
            ]
        }

    @app.get("/status")
    async def status() -> dict:
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

    @app.post("/switch")
    async def switch(request: SwitchRequest) -> JSONResponse:
        try:
            result = await supervisor.switch(request.model)
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
            model_id = config.resolve(model).id if model else None
        except UsageError as error:
            return JSONResponse({"error": str(error), "model": model}, status_code=404)
        return JSONResponse({"stopped": await supervisor.stop(model_id)})

    @app.get("/logs")
    async def logs(
        tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
        since: Annotated[int | None, Query(ge=0)] = None,
        model: str | None = None,
    ) -> dict:
        return supervisor.logs(tail, since, model)

    @app.post("/shutdown")
    async def shutdown() -> dict:
        if on_shutdown:
            on_shutdown()
        return {"shutting_down": True}

    return app

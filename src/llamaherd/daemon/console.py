"""The web console at the management port's `/` (docs/console.md).

A static page (web/index.html, app.js, app.css: plain JavaScript, shipped as package
data, nothing to build) that reads the same API as every other client, under the same
rules: the page and its files hold no data and are served to anyone who may reach the
port (daemon/guard.py still checks Host and Origin); every call it makes carries the API
key, which the page asks for when the daemon answers 401 and keeps in the tab's
sessionStorage, never in a URL. The two routes here say what no other route does: the
effective config and the latest benchmark report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from llamaherd import schema
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.store import Store

STATIC = Path(__file__).with_name("web")
FILES = {"app.js": "text/javascript", "app.css": "text/css"}
MASK = "********"


def is_open(path: str) -> bool:
    """The page and its files: no data, so no key needed to load them."""
    return path == "/" or path.startswith("/console/static/")


def mount(app: FastAPI, supervisor: Supervisor) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/console/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404)
        return FileResponse(STATIC / name, media_type=FILES[name])

    @app.get("/console/config")
    async def config() -> schema.ConsoleConfig:
        path = supervisor.config.path
        effective = _effective(supervisor)
        return schema.ConsoleConfig(path=str(path) if path else None, effective=effective)

    @app.get("/console/report")
    async def report() -> schema.BenchReport:
        written = Store().last_report()
        if written is None:
            return schema.BenchReport(path=None, html=None)
        charts = sorted(p.name for p in (written.parent / "charts").glob("*.png"))
        html = _markdown(written.read_text()).replace('src="charts/', 'src="console/report/charts/')
        return schema.BenchReport(path=str(written), html=html, charts=charts)

    @app.get("/console/report/charts/{name}", include_in_schema=False)
    async def chart(name: str) -> FileResponse:
        written = Store().last_report()
        charts = written.parent / "charts" if written else None
        if charts is None or name not in {p.name for p in charts.glob("*.png")}:
            raise HTTPException(404)
        return FileResponse(charts / name, media_type="image/png")


def _effective(supervisor: Supervisor) -> dict[str, Any]:
    """The config as the daemon runs it; the API key and profiles' env values masked
    (they may hold tokens)."""
    config = supervisor.config
    server = config.server.model_dump(mode="json")
    if server.get("api_key"):
        server["api_key"] = MASK
    models = {}
    for model_id, profile in config.models.items():
        row = profile.model_dump(mode="json")
        row["env"] = {key: MASK for key in row.get("env") or {}}
        models[model_id] = row
    return {
        "models_dir": str(config.models_dir),
        "llama_server": str(supervisor.llama_server),
        "default_model": config.default_model,
        "server": server,
        "models": models,
    }


def _markdown(text: str) -> str:
    """REPORT.md as HTML: CommonMark with tables; raw HTML in it is escaped."""
    from markdown_it import MarkdownIt  # only when a report is asked for

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)

"""The management API's contract (llamaherd/schema.py): /openapi.json documents each
route's answers by name, and what the daemon really sends fits them: no field the
supervisor or the sampler reports is dropped on the way out, none is invented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_runtime import FakeRuntime
from test_supervisor import herd as supervised
from test_supervisor import run

from llamaherd.daemon.api import create_app
from llamaherd.daemon.metrics import Metrics
from llamaherd.monitor import FakeGpuSource
from llamaherd.monitor.sampler import Sampler

# route -> {status code: the schema model its answer is}
CONTRACT = {
    ("get", "/health"): {"200": "Health"},
    ("get", "/models"): {"200": "ModelList"},
    ("get", "/status"): {"200": "Status"},
    ("post", "/switch"): {"200": "SwitchReply", "400": "ErrorAnswer", "404": "ErrorAnswer"},
    ("post", "/stop"): {"200": "Stopped", "404": "ErrorAnswer"},
    ("post", "/admission"): {"200": "Admission", "400": "ErrorAnswer", "404": "ErrorAnswer"},
    ("post", "/reload"): {"200": "Reloaded", "400": "ReloadRefused"},
    ("get", "/logs"): {"200": "LogPage"},
    ("get", "/system"): {"200": "SystemSnapshot", "503": "ErrorAnswer"},
    ("post", "/shutdown"): {"200": "ShuttingDown"},
}
FAKE_GPUS = Path(__file__).parent / "data" / "fake_gpus.json"


def shape(value: Any) -> Any:
    """The keys of a JSON value, nested (list items merged), without the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            item_shape = shape(item)
            if isinstance(item_shape, dict):
                merged.update(item_shape)
        return [merged] if merged else []
    return None


@pytest.fixture
def openapi(tmp_path: Path) -> dict[str, Any]:
    captured: dict[str, Any] = {}

    async def scenario() -> None:
        async with supervised(tmp_path, FakeRuntime()) as supervisor, httpx.AsyncClient() as http:
            app = create_app(
                supervisor,
                Metrics(supervisor, http),
                on_shutdown=lambda: None,
                on_reload=dict,
            )
            captured.update(app.openapi())

    run(scenario)
    return captured


def test_openapi_names_the_schema_of_every_answer(openapi: dict[str, Any]) -> None:
    for (method, path), answers in CONTRACT.items():
        responses = openapi["paths"][path][method]["responses"]
        for code, model in answers.items():
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{model}"}, (path, code)
    status = openapi["components"]["schemas"]["Status"]["properties"]
    assert {"daemon", "model", "state", "loaded", "last_error"} <= set(status)


def test_the_answers_keep_every_field_the_daemon_reports(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervised(tmp_path, FakeRuntime()) as supervisor:
            assert (await supervisor.switch("a")).ok
            async with httpx.AsyncClient() as http:
                sampler = Sampler(supervisor, http, FakeGpuSource(FAKE_GPUS))
                await sampler.sample()
                app = create_app(
                    supervisor,
                    Metrics(supervisor, http),
                    on_shutdown=lambda: None,
                    on_reload=dict,
                    sampler=sampler,
                )
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://herd") as api:
                    status = (await api.get("/status")).json()
                    assert status.pop("daemon")["pid"] > 0
                    # The original setup's two fields are the API's own, from the config.
                    name = supervisor.config.models["a"].name
                    assert (status.pop("model_name"), status.pop("status")) == (name, "")
                    reported = json.loads(json.dumps(supervisor.status()))
                    assert reported["loaded"] and reported["model"] == "a"
                    assert shape(status) == shape(reported)
                    logs = (await api.get("/logs")).json()
                    assert shape(logs) == shape(supervisor.logs(100))
                    system = (await api.get("/system")).json()
                    assert system["gpus"] and system["servers"] and system["system"]
                    assert shape(system) == shape(json.loads(json.dumps(sampler.snapshot())))

    run(scenario)


def test_bad_parameters_get_400_with_the_field_not_fastapis_422(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervised(tmp_path, FakeRuntime()) as supervisor, httpx.AsyncClient() as http:
            app = create_app(
                supervisor, Metrics(supervisor, http), on_shutdown=lambda: None, on_reload=dict
            )
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                logs = await api.get("/logs", params={"tail": "many"})
                assert logs.status_code == 400
                assert logs.json()["error"].startswith('"tail": Input should be a valid integer')
                admission = await api.post("/admission", json={"ctx": "big"})
                assert admission.status_code == 400 and admission.json()["error"].startswith(
                    '"ctx": '
                )

    run(scenario)

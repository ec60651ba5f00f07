"""The original setup's management API contract (its README's calls to :8081), replayed
against a real daemon: scripts written for it keep working with herd (issue 14, item 1).

Each request is sent as the original's clients send it: curl's headers, its picker's
reads of /models, `jq .model` on /status, the claude-local README's switch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fake_runtime import FakeRuntime, Knobs
from test_supervisor import herd as supervised
from test_supervisor import run, wait_until

from llamaherd.config import Config
from llamaherd.daemon.api import create_app
from llamaherd.daemon.metrics import Metrics
from llamaherd.store import Store

# What `curl -X POST 127.0.0.1:8081/switch -d '{"model": ...}'` sends: no JSON type.
CURL_FORM = {"User-Agent": "curl/8.5.0", "Accept": "*/*"}
CURL_FORM_TYPE = {**CURL_FORM, "Content-Type": "application/x-www-form-urlencoded"}
# The claude-local README's switch: `curl -X POST ... -H "Content-Type: application/json"`.
CURL_JSON = {**CURL_FORM, "Content-Type": "application/json"}
BENCH_PROFILE = """
[models.bench-dense]
name = "Tiny dense (bench)"
file = "dense.gguf"
ctx = 1024
"""


def switch(config: Config, body: str, headers: dict[str, str] = CURL_FORM_TYPE) -> httpx.Response:
    return httpx.post(f"{config.server.api_url}/switch", content=body, headers=headers, timeout=180)


def get(config: Config, path: str) -> Any:
    response = httpx.get(f"{config.server.api_url}{path}", headers=CURL_FORM, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_headerless_curl_switch_then_the_pickers_and_scripts_reads(daemon) -> None:
    herd = daemon(BENCH_PROFILE)
    # A measured speed for one profile; the others have none (and no declared hint).
    store = Store()
    run_id = store.start("speed", "moe", label="moe", endpoint=None, environment={}, settings={})
    store.finish(run_id, {}, gen_tps=147.4)

    answer = switch(herd, '{"model":"d"}')  # an alias, as a form body
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True and body["ok"] is True and body["model"] == "dense"

    rows = {row["id"]: row for row in get(herd, "/models")["models"]}
    picker = {
        id_: (row["name"], row["speed"], row["ctx_size"], row["is_bench"], row["active"])
        for id_, row in rows.items()
    }
    assert picker == {
        "dense": ("Tiny dense", "", "2048", False, True),
        "moe": ("Tiny MoE", "~147 t/s", "2048", False, False),
        "broken": ("broken", "", "2048", False, False),
        "bench-dense": ("Tiny dense (bench)", "", "1024", True, False),
    }
    assert rows["dense"]["state"] == "ready"  # herd's own words stay beside them

    status = get(herd, "/status")
    assert status["model"] == "dense"  # `curl -s :8081/status | jq .model`
    assert (status["model_name"], status["status"], status["state"]) == ("Tiny dense", "", "ready")


def test_bad_requests_get_the_originals_error_answers(daemon) -> None:
    herd = daemon()
    api = herd.server.api_url

    bad_json = switch(herd, '{"model": dense}')
    assert (bad_json.status_code, bad_json.json()) == (400, {"error": "invalid JSON"})
    empty = switch(herd, "")
    assert (empty.status_code, empty.json()) == (400, {"error": "invalid JSON"})
    no_field = switch(herd, '{"name": "dense"}', CURL_JSON)
    assert (no_field.status_code, no_field.json()) == (400, {"error": 'missing "model" field'})
    wrong_type = switch(herd, '{"model": "dense", "restart": "soon"}')
    assert wrong_type.status_code == 400 and wrong_type.json()["error"].startswith('"restart": ')

    unknown = switch(herd, '{"model": "dens"}')
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown model: dens"
    assert unknown.json()["hint"].startswith("did you mean 'dense'?")  # beside, not in, error

    for path in ("/nope", "/v1/models", "/models/dense"):
        missing = httpx.get(f"{api}{path}", headers=CURL_FORM, timeout=30)
        assert (missing.status_code, missing.json()) == (404, {"error": "not found"}), path
    wrong_method = httpx.get(f"{api}/switch", headers=CURL_FORM, timeout=30)
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "method not allowed"}

    # None of it started or changed anything.
    status = get(herd, "/status")
    assert (status["model"], status["model_name"]) == (None, None)
    assert status["status"] == "no model loaded"


def test_a_failed_start_answers_200_with_success_false(daemon) -> None:
    herd = daemon()
    alone = switch(herd, '{"model": "broken"}', CURL_JSON)
    assert alone.status_code == 200, alone.text
    failed = alone.json()
    assert (failed["success"], failed["ok"], failed["restored"]) == (False, False, None)
    assert failed["model"] == "broken" and failed["error"] and failed["log_tail"]
    status = get(herd, "/status")
    # The failure reason is the original's `status` message while that model is current.
    assert status["model"] == "broken" and status["model_name"] == "broken"
    assert status["status"] == status["last_error"]["reason"] == failed["error"]

    assert switch(herd, '{"model": "dense"}').json()["success"] is True
    again = switch(herd, '{"model": "broken"}')
    assert again.status_code == 200
    assert (again.json()["success"], again.json()["restored"]) == (False, "dense")
    status = get(herd, "/status")
    assert (status["model"], status["status"]) == ("dense", "")  # fine again: restored


def test_status_says_loading_while_the_current_model_starts(tmp_path: Path) -> None:
    # The fast layer: a fake llama-server that never finishes loading holds `starting`.
    async def scenario() -> None:
        fake = FakeRuntime({"a": Knobs(hang=True)})
        async with supervised(tmp_path, fake) as supervisor, httpx.AsyncClient() as http:
            app = create_app(
                supervisor, Metrics(supervisor, http), on_shutdown=lambda: None, on_reload=dict
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://herd") as api:
                starting = asyncio.create_task(supervisor.switch("a"))
                assert await wait_until(lambda: str(supervisor.state_of("a")) == "starting")
                status = (await api.get("/status")).json()
                assert (status["model"], status["state"], status["status"]) == (
                    "a",
                    "starting",
                    "loading",
                )
                await supervisor.stop()
                await asyncio.gather(starting, return_exceptions=True)

    run(scenario)


def test_speed_is_the_measured_one_else_the_declared_hint(tmp_path: Path) -> None:
    """The original's SPEED column lives on as `speed_hint` until herd has measured."""
    from llamaherd.config import parse_config
    from llamaherd.profiles import describe

    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    config = parse_config(
        f'models_dir = "{tmp_path}"\n[models.a]\nfile = "a.gguf"\nspeed_hint = "~90 t/s"\n'
        '[models.b]\nfile = "a.gguf"\n',
        tmp_path / "herd.toml",
    )
    assert describe(config.models["a"]).speed == "~90 t/s"
    assert describe(config.models["a"], speed_tps=147.2).speed == "~147 t/s"
    assert describe(config.models["b"]).speed == ""

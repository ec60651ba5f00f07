"""llama.cpp's router model API on herd's gateway (issue 16, item 4): the same requests a
router (`llama-server --models-preset`) answers get answers of the same shape from herd,
and loading, unloading and the status feed drive herd's own models."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_until

from llamaherd import control
from llamaherd.config import Config
from llamaherd.runtime.process import free_port

pytestmark = pytest.mark.server


@pytest.fixture
def router(tmp_path: Path, model_files: Path, llama_server: Path) -> Iterator[str]:
    """llama-server in router mode with the test profiles' files as presets: its URL."""
    preset = tmp_path / "preset.ini"
    preset.write_text(
        f"[dense]\nmodel = {model_files / 'dense.gguf'}\nctx-size = 2048\nalias = d\n\n"
        f"[moe]\nmodel = {model_files / 'moe.gguf'}\nctx-size = 2048\n"
    )
    port = free_port()
    argv = [str(llama_server), "--models-preset", str(preset), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*argv, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _answers(f"{url}/models"), timeout=60), "router never answered"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def rows(url: str) -> dict[str, dict]:
    answer = httpx.get(f"{url}/models", timeout=30).json()
    return {row["id"]: row for row in answer["data"]}


def value(url: str, model: str) -> str:
    return rows(url)[model]["status"]["value"]


def shape(data: object) -> object:
    """The JSON's keys and value types, not its values."""
    if isinstance(data, dict):
        return {key: shape(item) for key, item in data.items()}
    if isinstance(data, list):
        return [shape(data[0])] if data else []
    return type(data).__name__


def missing_from(ours: object, theirs: object, where: str = "") -> list[str]:
    """What the router's shape has that ours lacks or types differently (ours may add)."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{where}: {ours} instead of an object"]
        gaps = [f"{where}.{key}: missing" for key in theirs if key not in ours]
        for key in theirs.keys() & ours.keys():
            gaps += missing_from(ours[key], theirs[key], f"{where}.{key}")
        return gaps
    if isinstance(theirs, list) and theirs:
        return missing_from(ours[0], theirs[0], f"{where}[]") if ours else []
    return [] if ours == theirs else [f"{where}: {ours} instead of {theirs}"]


def load(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/models/load", json={"model": model}, timeout=30)


def test_models_answers_in_the_routers_shape(make_herd, router: str) -> None:
    herd: Config = make_herd()
    control.up(herd, "dense")
    gateway = herd.server.public_url
    assert load(router, "dense").json() == {"success": True}
    assert wait_until(lambda: value(router, "dense") == "loaded", timeout=60)
    theirs, ours = rows(router), rows(gateway)
    assert (value(gateway, "dense"), value(gateway, "moe")) == ("loaded", "unloaded")
    for model in ("dense", "moe"):  # loaded (with llama-server's meta), and unloaded
        gaps = missing_from(shape(ours[model]), shape(theirs[model]), model)
        assert gaps == [], gaps
    assert ours["dense"]["aliases"] == theirs["dense"]["aliases"] == ["d"]
    assert str(herd.models["moe"].file) in ours["moe"]["status"]["args"]
    assert f"m = {herd.models['moe'].file}" in ours["moe"]["status"]["preset"]
    for path in ("/models", "/v1/models"):
        top = httpx.get(f"{gateway}{path}", timeout=10).json()
        assert top.keys() == httpx.get(f"{router}{path}", timeout=10).json().keys()
    # The router's own props: what turns the web UI's model list on.
    props = [httpx.get(f"{u}/props?autoload=false", timeout=10).json() for u in (router, gateway)]
    assert props[0]["role"] == props[1]["role"] == "router"
    assert missing_from(shape(props[1]), shape(props[0])) == []


def test_load_unload_and_the_status_feed_drive_herds_models(daemon) -> None:
    herd: Config = daemon()
    gateway = herd.server.public_url
    records: list[dict] = []
    listening = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{gateway}/models/sse", timeout=120) as response:
                listening.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        records.append(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:
            pass  # the daemon stops at the end of the test, mid-stream

    threading.Thread(target=listen, daemon=True).start()
    assert listening.wait(timeout=30)
    # Answered at once, as the router does; /models then follows the start.
    assert load(gateway, "moe").json() == {"success": True}
    assert wait_until(lambda: value(gateway, "moe") == "loaded", timeout=60)
    assert control.connect(herd).status().model == "moe"
    already = load(gateway, "moe")
    assert already.status_code == 400
    assert already.json()["error"]["message"] == "model is already running"
    unload = httpx.post(f"{gateway}/models/unload", json={"model": "moe"}, timeout=30)
    assert unload.json() == {"success": True}
    assert value(gateway, "moe") == "unloaded"
    seen = lambda: [(r["model"], r["event"], r["data"]["status"]) for r in records]  # noqa: E731
    feed = [
        ("moe", "model_status", "loading"),
        ("moe", "status_change", "loaded"),
        ("moe", "status_change", "unloaded"),
    ]
    assert wait_until(lambda: [s for s in seen() if s[0] == "moe"] == feed, timeout=10), seen()
    # A model that cannot start: unloaded, failed, with the reason.
    assert load(gateway, "broken").json() == {"success": True}
    assert wait_until(lambda: rows(gateway)["broken"]["status"].get("failed"), timeout=60)
    broken = rows(gateway)["broken"]["status"]
    assert broken["value"] == "unloaded" and broken["exit_code"] != 0 and broken["error"]
    assert ("broken", "status_change", "unloaded") in seen()


def test_router_api_errors(daemon) -> None:
    herd: Config = daemon()
    gateway = herd.server.public_url
    unknown = load(gateway, "nope")
    assert unknown.status_code == 404
    assert "unknown model 'nope'" in unknown.json()["error"]["message"]
    not_running = httpx.post(f"{gateway}/models/unload", json={"model": "d"}, timeout=10)
    assert not_running.status_code == 400
    assert not_running.json()["error"]["message"] == "model is not running"
    bad = httpx.post(f"{gateway}/models/load", content=b"[1]", timeout=10)
    assert bad.status_code == 400 and '{"model"' in bad.json()["error"]["message"]
    # A router-aware client asking a stopped model's props without autoload is told so,
    # and nothing starts.
    props = httpx.get(f"{gateway}/props?model=moe&autoload=false", timeout=10)
    assert (props.status_code, props.json()["error"]["message"]) == (400, "model is not loaded")
    assert value(gateway, "moe") == "unloaded"

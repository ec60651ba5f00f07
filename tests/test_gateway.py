"""The gateway on the public port, against real llama-servers on the generated models."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import server_key, wait_until

from llamaherd import control
from llamaherd.config import Config
from llamaherd.llamacpp import build

SEEDED = {
    "messages": [{"role": "user", "content": "Tell me about llamas"}],
    "max_tokens": 24,
    "temperature": 0,
    "seed": 7,
}


def streamed_text(url: str, request: dict, key: str | None = None) -> str:
    """Send a streaming chat request and join the content deltas of its SSE events."""
    text = []
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={**request, "stream": True},
        headers=headers,
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    text.append(choice["delta"].get("content") or "")
    return "".join(text)


def test_streamed_chat_through_gateway_equals_direct(herd: Config) -> None:
    answer = control.up(herd, "dense")
    direct = streamed_text(answer.url, SEEDED, server_key(answer))
    through = streamed_text(herd.server.public_url, {**SEEDED, "model": "dense"})
    assert direct and through == direct


def test_request_naming_another_model_gets_that_models_answer(herd: Config) -> None:
    control.up(herd, "dense")
    response = httpx.post(
        f"{herd.server.public_url}/v1/chat/completions",
        json={**SEEDED, "model": "moe"},
        timeout=120,
    )
    assert response.status_code == 200
    assert response.json()["model"] == "moe"  # llama-server answers with its --alias
    assert response.headers["x-herd-model"] == "moe"
    assert control.connect(herd).status().model == "moe"


def test_get_endpoints_pass_through_and_model_list_shows_profiles(herd: Config) -> None:
    control.up(herd, "dense")
    gateway = herd.server.public_url
    assert httpx.get(f"{gateway}/health", timeout=10).json()["status"] == "ok"
    props = httpx.get(f"{gateway}/props", timeout=10)
    assert "chat_template" in props.json()
    assert props.headers.get_list("server") == ["llama.cpp"]  # llama-server's, once
    models = httpx.get(f"{gateway}/v1/models", timeout=10).json()["data"]
    assert {m["id"]: m["state"] for m in models} == {
        "dense": "ready",
        "moe": "stopped",
        "broken": "stopped",
    }


def test_web_ui_is_served_through_the_gateway(herd: Config) -> None:
    if "-DLLAMA_BUILD_UI=ON" not in herd_build_args() and os.environ.get("CI") != "true":
        pytest.skip("this llama-server was built without npm, so it has no web UI")
    control.up(herd, "dense")
    page = httpx.get(f"{herd.server.public_url}/", timeout=10)  # httpx un-gzips it
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()


def herd_build_args() -> list[str]:
    """The cmake flags of herd's cached build (empty for a llama-server from elsewhere)."""
    try:
        stamp = json.loads((build.pinned_build_dir() / "build.json").read_text())
    except (OSError, ValueError):
        return []
    return stamp.get("cmake_args", [])


def test_twenty_concurrent_requests_alternating_models_all_succeed(herd: Config) -> None:
    control.up(herd, "dense")
    url = f"{herd.server.public_url}/v1/chat/completions"

    def ask(i: int) -> tuple[int, str]:
        model = ("dense", "moe")[i % 2]
        response = httpx.post(url, json={**SEEDED, "max_tokens": 4, "model": model}, timeout=300)
        return response.status_code, response.json().get("model", "")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(ask, range(20)))
    assert [status for status, _ in results] == [200] * 20
    assert [model for _, model in results] == [("dense", "moe")[i % 2] for i in range(20)]


def test_request_during_a_switch_waits_and_succeeds(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    switching = threading.Thread(target=client.switch, args=("moe",))
    switching.start()
    assert wait_until(lambda: client.status().state != "ready", timeout=5, interval=0.005)
    response = httpx.post(
        f"{herd.server.public_url}/v1/chat/completions",
        json={**SEEDED, "max_tokens": 4},
        timeout=120,
    )
    switching.join()
    assert response.status_code == 200
    assert response.json()["model"] == "moe"


def test_client_disconnect_cancels_the_generation(herd: Config) -> None:
    answer = control.up(herd, "dense")
    request = {**SEEDED, "max_tokens": 20000, "ignore_eos": True, "stream": True}
    with httpx.stream(
        "POST", f"{herd.server.public_url}/v1/chat/completions", json=request, timeout=60
    ) as response:
        next(response.iter_lines())  # generation has started
    slots_url = f"{answer.url}/slots"
    key = {"Authorization": f"Bearer {server_key(answer)}"}
    assert wait_until(
        lambda: (
            not any(s["is_processing"] for s in httpx.get(slots_url, headers=key, timeout=5).json())
        ),
        timeout=5,
    ), "llama-server stopped generating once the client left"


def test_swap_off_refuses_other_and_unknown_models(make_herd) -> None:
    herd = make_herd(swap_on_request=False)
    control.up(herd, "dense")
    url = f"{herd.server.public_url}/v1/chat/completions"
    other = httpx.post(url, json={**SEEDED, "model": "moe"}, timeout=30)
    assert other.status_code == 400 and "swap_on_request" in other.json()["error"]["message"]
    unknown = httpx.post(url, json={**SEEDED, "model": "gpt-4o"}, timeout=30)
    assert unknown.status_code == 404
    assert httpx.post(url, json={**SEEDED, "model": "d"}, timeout=30).status_code == 200


def test_full_queue_is_503_with_retry_after(make_herd) -> None:
    herd = make_herd(queue_size=0)
    control.up(herd, "dense")
    response = httpx.post(
        f"{herd.server.public_url}/v1/chat/completions", json={**SEEDED, "model": "moe"}, timeout=30
    )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert control.connect(herd).status().model == "dense"


def test_failed_swap_is_503_and_previous_model_keeps_serving(herd: Config) -> None:
    control.up(herd, "dense")
    url = f"{herd.server.public_url}/v1/chat/completions"
    response = httpx.post(url, json={**SEEDED, "model": "broken"}, timeout=120)
    assert response.status_code == 503
    assert "broken failed to start" in response.json()["error"]["message"]
    assert httpx.post(url, json=SEEDED, timeout=60).json()["model"] == "dense"


def test_oversized_body_is_413(make_herd) -> None:
    herd = make_herd(max_request_mb=0.001)
    control.up(herd, "dense")
    big = {**SEEDED, "messages": [{"role": "user", "content": "x" * 4000}]}
    response = httpx.post(f"{herd.server.public_url}/v1/chat/completions", json=big, timeout=30)
    assert response.status_code == 413


def test_api_key_guards_gateway_and_management_api_on_a_non_loopback_bind(make_herd) -> None:
    herd = make_herd(api_key="s3cret", host="0.0.0.0")  # reachable from other machines
    control.up(herd, "dense")
    gateway, api = herd.server.public_url, herd.server.api_url
    assert httpx.get(f"{gateway}/v1/models", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{gateway}/v1/models", headers=wrong, timeout=10).status_code == 401
    bearer = {"Authorization": "Bearer s3cret"}
    assert httpx.get(f"{gateway}/v1/models", headers=bearer, timeout=10).status_code == 200
    anthropic = {"x-api-key": "s3cret"}
    assert httpx.get(f"{gateway}/health", headers=anthropic, timeout=10).status_code == 200
    assert httpx.get(f"{api}/status", timeout=10).status_code == 401
    assert httpx.get(f"{api}/status", headers=bearer, timeout=10).status_code == 200
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200  # probes stay open

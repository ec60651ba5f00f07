"""Ollama's API on herd's gateway (issue 19, items 1 and 2), driven by the `ollama`
Python client library as a real client against real llama-servers through herd's
daemon: list, show, chat and generate (streamed and not), embed, and `keep_alive`
(0 unloads after the answer; a duration is the expiry /api/ps shows). A `ttl` or
`keep_alive` on the OpenAI API sets the lifetime the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import ollama
import pytest
from conftest import wait_until

from llamaherd.config import Config

pytestmark = pytest.mark.server

EMBED = """
[models.embed]
file = "dense.gguf"
ctx = 2048
args = ["--embeddings", "--pooling", "mean"]
"""
HI = [{"role": "user", "content": "hi"}]


def loaded(herd: Config) -> list[str]:
    status = httpx.get(f"{herd.server.api_url}/status", timeout=10).json()
    return [m["model"] for m in status["loaded"]]


@pytest.fixture
def herd(daemon) -> Config:
    return daemon(EMBED)


@pytest.fixture
def client(herd: Config) -> ollama.Client:
    return ollama.Client(host=herd.server.public_url, timeout=120)


def test_the_client_lists_shows_and_reports_the_version(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert {"dense", "moe", "embed"} <= models.keys()
    assert "broken" not in models  # not a GGUF: nothing could answer for it
    dense = models["dense"]
    assert dense.size and dense.size > 100_000 and dense.modified_at is not None
    assert dense.details is not None and dense.details.format == "gguf"
    assert dense.details.family and dense.details.parameter_size
    shown = client.show("dense")
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == dense.details.family
    assert shown.capabilities and "completion" in shown.capabilities
    assert "embedding" in (client.show("embed:latest").capabilities or [])
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("llama3.2")
    assert missing.value.status_code == 404 and "dense" in missing.value.error
    assert httpx.get(f"{client._client.base_url}/api/version").json()["version"]


def test_chat_and_generate_streamed_and_not(herd: Config, client: ollama.Client) -> None:
    answer = client.chat("dense", messages=HI, options={"num_predict": 4, "temperature": 0})
    assert answer.done and answer.message.role == "assistant" and answer.message.content
    assert answer.eval_count == 4 and answer.done_reason == "length"
    assert answer.prompt_eval_count and answer.total_duration and answer.eval_duration
    chunks = list(
        client.chat("dense", messages=HI, stream=True, options={"num_predict": 5, "temperature": 0})
    )
    assert [c.done for c in chunks][-1] is True and not any(c.done for c in chunks[:-1])
    assert "".join(c.message.content or "" for c in chunks[:-1])
    assert chunks[-1].eval_count == 5
    greedy = {"num_predict": 3, "temperature": 0}  # random weights: sampling may stop early
    generated = client.generate("dense", prompt="Once", options=greedy)
    assert generated.done and generated.response and generated.eval_count == 3
    options = {"num_predict": 3, "temperature": 0}
    raw = list(client.generate("dense", prompt="Once", raw=True, stream=True, options=options))
    assert raw[-1].done and "".join(r.response or "" for r in raw)
    assert client.chat("moe", messages=HI, options={"num_predict": 2, "temperature": 0}).done
    assert loaded(herd) == ["moe"]  # the request for moe swapped dense out (max_loaded 1)
    # The activity log has a record for each, with llama-server's figures.
    records = httpx.get(f"{herd.server.api_url}/activity", timeout=10).json()["records"]
    chats = [r for r in records if r["endpoint"] == "/api/chat"]
    assert sorted((r["model"], r["generated_tokens"]) for r in chats) == [
        ("dense", 4),
        ("dense", 5),
        ("moe", 2),
    ]


def test_json_format_and_images_without_a_projector(client: ollama.Client) -> None:
    answer = client.chat("dense", messages=HI, format="json", options={"num_predict": 16})
    assert answer.message.content is not None
    assert answer.message.content.strip().startswith("{")
    png = (  # one pixel
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
        "RU5ErkJggg=="
    )
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat("dense", messages=[{"role": "user", "content": "what?", "images": [png]}])
    assert refused.value.status_code == 400 and "--mmproj" in refused.value.error


def test_embed_and_a_model_without_embeddings(client: ollama.Client) -> None:
    embedded = client.embed("embed", input=["hi", "there"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 64
    assert embedded.embeddings[0] != embedded.embeddings[1]
    legacy = client.embeddings("embed", prompt="hi")
    assert legacy.embedding == pytest.approx(client.embed("embed", input="hi").embeddings[0])
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed("dense", input="hi")
    assert refused.value.status_code == 501 and '"--embeddings"' in refused.value.error


def test_keep_alive_zero_unloads_and_a_duration_is_the_expiry(
    herd: Config, client: ollama.Client
) -> None:
    client.chat("dense", messages=HI, options={"num_predict": 2}, keep_alive="1h")
    (running,) = client.ps().models
    assert running.model == "dense" and running.expires_at is not None
    left = (running.expires_at - datetime.now(UTC)).total_seconds()
    assert 3500 < left <= 3600
    assert running.size and running.size_vram is not None
    client.chat("dense", messages=HI, options={"num_predict": 2}, keep_alive=0)
    assert wait_until(lambda: loaded(herd) == [], timeout=10), loaded(herd)
    # An empty prompt loads the model; with keep_alive 0 it unloads it, as Ollama does.
    assert client.generate("dense").done_reason == "load"
    assert loaded(herd) == ["dense"]
    assert client.generate("dense", keep_alive=0).done_reason == "unload"
    assert loaded(herd) == []


def test_ttl_on_the_openai_api_sets_the_lifetime(herd: Config, client: ollama.Client) -> None:
    url = f"{herd.server.public_url}/v1/chat/completions"
    body = {"model": "dense", "messages": HI, "max_tokens": 2, "ttl": -1}
    assert httpx.post(url, json=body, timeout=120).status_code == 200
    (running,) = client.ps().models  # -1: kept, as Ollama's far-future expiry says
    assert running.expires_at and running.expires_at.year > datetime.now(UTC).year + 100
    body["ttl"] = 0
    assert httpx.post(url, json=body, timeout=120).status_code == 200
    assert wait_until(lambda: loaded(herd) == [], timeout=10), loaded(herd)
    bad = httpx.post(url, json={**body, "keep_alive": "soon"}, timeout=30)
    assert bad.status_code == 400 and "keep_alive" in bad.json()["error"]["message"]


def test_unsupported_endpoints_say_what_herd_does_instead(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as pull:
        client.pull("llama3.2")
    assert pull.value.status_code == 501 and "herd add" in pull.value.error
    with pytest.raises(ollama.ResponseError) as delete:
        client.delete("dense")
    assert "herd.toml" in delete.value.error

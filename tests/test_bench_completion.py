"""herd bench humaneval's completion mode, the way EvalPlus asks base models: the task's
prompt raw to /v1/completions with its base-model stop strings, prompt + completion
scored; chosen when the profile's GGUF has no chat template. (The run on a real base
model, Gemma 3 270M, is in test_real_models.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import gguf
import httpx
import pytest
from conftest import run_herd
from test_bench import Interrupted, dataset, humaneval_data  # noqa: F401  (fixtures)

from llamaherd.bench import humaneval
from llamaherd.bench.chat import stream_completion
from llamaherd.bench.target import ClaudeCode, Target, endpoint_target, herd_targets
from llamaherd.config import parse_config
from llamaherd.errors import UsageError
from llamaherd.store import Store


def write_gguf(path: Path, template: str | None) -> Path:
    """A header-only GGUF: all the mode choice reads is whether a chat template is there."""
    writer = gguf.GGUFWriter(path, arch="llama")
    if template:
        writer.add_chat_template(template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def profiles(tmp_path: Path) -> dict[str, Target]:
    base = write_gguf(tmp_path / "base.gguf", None)
    instruct = write_gguf(tmp_path / "instruct.gguf", "{{ messages }}")
    text = f"""
[models.base]
file = "{base}"
[models.instruct]
file = "{instruct}"
[models.base-templated]  # a template given on llama-server's command line
file = "{base}"
args = ["--chat-template", "chatml"]
[models.gone]
file = "{tmp_path / "missing.gguf"}"
"""
    config = parse_config(text, tmp_path / "herd.toml")
    return {t.model: t for t in herd_targets(config, list(config.models), every=False)}


def test_a_gguf_without_chat_template_is_asked_by_completion(
    profiles: dict[str, Target],
) -> None:
    chosen = {name: humaneval.choose_mode(target, None) for name, target in profiles.items()}
    assert chosen == {
        "base": "completion",
        "instruct": "chat",
        "base-templated": "chat",
        "gone": "chat",  # cannot be read: starting it fails first, with the reason
    }
    assert humaneval.choose_mode(profiles["base"], "chat") == "chat"
    assert humaneval.choose_mode(profiles["instruct"], "completion") == "completion"
    # An endpoint's model is unknown: chat, unless asked otherwise.
    endpoint = endpoint_target("http://127.0.0.1:9/v1", "some-model", None)
    assert humaneval.choose_mode(endpoint, None) == "chat"
    assert humaneval.choose_mode(endpoint, "completion") == "completion"


def test_the_run_records_its_mode_stops_and_evalplus_token_limit(
    profiles: dict[str, Target],
    dataset: humaneval.Dataset,  # noqa: F811
) -> None:
    store = Store()

    def stop_before_asking(phase: str, done: int, total: int) -> None:
        raise Interrupted  # the run and its settings are stored by now

    for name in ("base", "instruct"):
        with pytest.raises(Interrupted):
            humaneval.run(
                profiles[name],
                dataset,
                humaneval.HumanEvalSettings(limit=1),
                store,
                environment=dict,
                progress=stop_before_asking,
            )
    stored = {run.model: run.settings for run in store.runs("humaneval", status="failed")}
    assert stored["base"]["mode"] == "completion"
    assert stored["base"]["max_tokens"] == 768  # EvalPlus's, not the 4096 kept for reasoning
    assert stored["base"]["system_prompt"] is None  # no chat, no system prompt
    stops = stored["base"]["request"]["stop"]
    for stop in ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert "):
        assert stop in stops
    assert stored["instruct"]["mode"] == "chat" and stored["instruct"]["max_tokens"] == 4096


def sse(*chunks: dict) -> bytes:
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def test_completion_request_is_the_raw_prompt_and_the_stream_is_joined(
    dataset: humaneval.Dataset,  # noqa: F811
) -> None:
    problem = dataset.problems["HumanEval/0"]
    seen: list[httpx.Request] = []
    timings = {"prompt_n": 120, "predicted_n": 2, "predicted_per_second": 50.0}

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(
            {"choices": [{"text": "    return", "index": 0, "finish_reason": None}]},
            {"choices": [{"text": " True\n", "index": 0, "finish_reason": None}]},
            {"choices": [{"text": "", "index": 0, "finish_reason": "stop"}], "timings": timings},
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    target = Target(model="base", label="base", base_url="http://gateway/v1")
    stops = humaneval.completion_stops()

    async def ask() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            prompt = humaneval.completion_prompt(problem)
            return await stream_completion(http, target, prompt, max_tokens=768, stop=stops)

    reply = asyncio.run(ask())
    (request,) = seen
    assert request.url == "http://gateway/v1/completions"
    body = json.loads(request.content)
    assert body["prompt"] == problem["prompt"].strip() + "\n" and "messages" not in body
    assert body["stop"] == stops and body["temperature"] == 0 and body["max_tokens"] == 768
    assert body["model"] == "base" and body["stream"] is True
    assert reply.content == "    return True\n" and reply.finish_reason == "stop"
    assert reply.generated == 2 and reply.timings == timings


def test_prompt_and_completion_together_are_the_program_scored(
    dataset: humaneval.Dataset,  # noqa: F811
) -> None:
    """The canonical body, answered as a completion, passes: the prompt (signature,
    imports, docstring) is joined in front, as EvalPlus does for base models. The same
    body as a chat answer has no function around it and fails."""
    ids = ["HumanEval/0", "HumanEval/2"]
    problems = {t: dataset.problems[t] for t in ids}
    for mode, expected in (("completion", "pass"), ("chat", "fail")):
        solutions = {
            t: humaneval.extract(p["canonical_solution"], p, mode) for t, p in problems.items()
        }
        statuses = humaneval.score(problems, solutions, dataset.hash)
        assert {s["base"] for s in statuses.values()} == {expected}, mode


def test_unknown_mode_is_exit_2() -> None:
    result = run_herd("bench", "humaneval", "--mode", "base")
    assert result.returncode == 2
    assert "'base' is not one of 'chat', 'completion'" in result.stderr


def test_claude_code_cannot_be_asked_by_completion() -> None:
    claude = Target(
        model="opus",
        label="opus",
        base_url="",
        claude_code=ClaudeCode(binary=Path("claude"), environ={}, version=None),
    )
    with pytest.raises(UsageError, match="Claude Code answers chat only"):
        humaneval.choose_mode(claude, "completion")

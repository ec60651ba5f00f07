"""Lazy restore of saved prompt caches (kv_restore = "lazy", docs/kv-keep.md): a start
restores nothing; a request whose prompt shares a long prefix with a saved file gets it
restored first. With a real llama-server for what it decides (its tokens, its timings),
on the fake runtime for the races."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fake_runtime import FakeRuntime, Knobs
from test_kv_keep import PROMPT, complete, daemon_log, kv_cache, kv_files, swap_out_long
from test_supervisor import herd

from llamaherd import control
from llamaherd.config import Config
from llamaherd.daemon import kvstore
from llamaherd.daemon.kvstore import Entry
from llamaherd.daemon.supervisor import Supervisor

OTHER = " ".join(f"v{i}" for i in range(700))  # as long as PROMPT, sharing no prefix


def test_a_lazy_start_restores_nothing_until_a_request_matches(make_herd) -> None:
    herd, prompt_n = swap_out_long(make_herd, kv_restore="lazy")
    control.up(herd, "long")
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.lazy and restore.files == 0 and restore.pending == 1

    other = complete(herd, "long", OTHER)  # shares nothing with the saved prompt
    assert other["prompt_n"] > 2000, other
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 0 and restore.pending == 1

    again = complete(herd, "long")
    assert again["prompt_n"] < 10, again  # the prefix came from the restored file
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 1 and restore.pending == 0
    assert restore.tokens >= prompt_n and restore.seconds_saved > 0
    metrics = httpx.get(f"{herd.server.api_url}/metrics", timeout=10).text
    assert f'herd_kv_restored_tokens_total{{model="long"}} {float(restore.tokens)}' in metrics


def test_a_profile_can_restore_lazily_when_the_server_restores_at_start(make_herd) -> None:
    herd, _ = swap_out_long(make_herd, 'kv_restore = "lazy"\n')  # [server] keeps "start"
    control.up(herd, "long")
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.lazy and restore.pending == 1


def anthropic(config: Config, system: str, question: str) -> dict:
    """One Anthropic messages request the way Claude Code sends its system prompt."""
    request = {
        "model": "long",
        "max_tokens": 2,
        "temperature": 0,
        "system": [{"type": "text", "text": system}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}],
    }
    url = f"{config.server.public_url}/v1/messages"
    answer = httpx.post(url, json=request, timeout=300)
    assert answer.status_code == 200, answer.text
    # Its usage splits the prompt: cache_read_input_tokens came from the cache.
    return answer.json()["usage"]


def test_an_anthropic_request_matches_the_chat_it_saved(make_herd) -> None:
    herd = make_herd(
        '\n[models.long]\nfile = "dense.gguf"\nctx = 8192\nparallel = 1\n', kv_restore="lazy"
    )
    control.up(herd, "long")
    first = anthropic(herd, PROMPT, "first question")
    assert first["input_tokens"] > 2000, first
    control.up(herd, "moe")
    control.up(herd, "long")
    again = anthropic(herd, PROMPT, "a second question")  # same system prompt, new question
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 1, restore
    # What it read from the cache is the system prompt: only the new question was processed.
    assert again.get("cache_read_input_tokens", 0) > 2000, again


def test_a_corrupted_file_in_lazy_mode_is_discarded_and_the_request_succeeds(make_herd) -> None:
    herd, _ = swap_out_long(make_herd, kv_restore="lazy")
    (file,) = kv_files()
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # its KV data: the tokens still match
    file.write_bytes(bytes(data))

    again = complete(herd, "long")
    assert again["prompt_n"] > 2000, again
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 0 and restore.discarded == 1
    assert restore.pending == 0
    assert "discarded: its contents changed since it was saved" in daemon_log()
    assert file not in kv_files()


# -- on the fake runtime: the races a real llama-server does not stage on demand --------
TOKENS = tuple(range(1, 2001))
IDLE = {"id": 0, "n_prompt_tokens": 0, "is_processing": False}
BODY = json.dumps({"prompt": "the long prompt"}).encode()


def saved_file(root: Path, profile_id: str, identity: str, tokens: tuple[int, ...]) -> Entry:
    """A slot file as llama-server b11434 writes it (header, packed tokens, state)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"{profile_id}.{identity[:16]}.test.bin"
    packed = struct.pack(f"<iII{len(tokens)}iI", -1, 1, len(tokens), *tokens, 0)
    data = struct.pack("<3I", kvstore.SEQ_MAGIC, kvstore.SEQ_VERSION, len(packed) // 4)
    (root / name).write_bytes(data + packed + b"kv data" * 100)
    path = root / name
    entry = Entry(
        name=name,
        profile=profile_id,
        identity=identity,
        slot=0,
        tokens=len(tokens),
        bytes=path.stat().st_size,
        sha256=kvstore.sha256_of(path),
        saved_at=0.0,
        prompt_tps=1000.0,
    )
    kvstore.record(root, entry)
    return entry


def restores(fake: FakeRuntime) -> list[dict]:
    return [r for s in fake.servers for r in s.requests if r["path"].startswith("/slots/")]


def test_a_saved_file_holds_the_tokens_llama_server_packed(tmp_path) -> None:
    entry = saved_file(tmp_path, "a", "0" * 64, TOKENS)
    assert list(kvstore.saved_tokens(entry.bin_path(tmp_path))) == list(TOKENS)


async def a_waits_lazily(supervisor: Supervisor) -> Callable[[], Awaitable[None]]:
    """Starts a with a saved file matching TOKENS; what the gateway calls before a request."""
    profile = supervisor.config.resolve("a")
    saved_file(supervisor.kv.root, "a", kvstore.identity(profile, Path("llama-server")), TOKENS)
    assert (await supervisor.switch("a")).ok
    model = supervisor.models["a"]
    assert model.server is not None
    server, settings = model.server, supervisor.config.server
    return lambda: supervisor.kv.before_request(profile, server, "/completion", BODY, settings)


def test_two_matching_requests_restore_the_file_once(tmp_path) -> None:
    knobs = Knobs(slots=(IDLE,), slot_action_delay=0.3, prompt_tokens=TOKENS)
    fake = FakeRuntime(knobs={"a": knobs})

    async def scenario() -> None:
        async with herd(tmp_path, fake, kv_restore="lazy") as supervisor:
            before_request = await a_waits_lazily(supervisor)
            await asyncio.gather(before_request(), before_request())
            assert len(restores(fake)) == 1
            restore = supervisor.kv.last_restore["a"]
            assert restore.files == 1 and restore.pending == 0 and restore.error is None

    asyncio.run(scenario())


def test_no_file_is_restored_into_a_busy_slot(tmp_path) -> None:
    busy = {**IDLE, "is_processing": True}
    fake = FakeRuntime(knobs={"a": Knobs(slots=(busy,), prompt_tokens=TOKENS)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, kv_restore="lazy") as supervisor:
            await (await a_waits_lazily(supervisor))()
            assert restores(fake) == []
            assert supervisor.kv.last_restore["a"].pending == 1  # still waiting for a slot

    asyncio.run(scenario())

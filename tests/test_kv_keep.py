"""A model's prompt cache survives being swapped out (issue 18, docs/kv-keep.md): with a
real llama-server, A → B → A under max_loaded = 1 answers the repeated long request
without processing its prefix again; anything that makes a saved file wrong discards it
and the request is answered as usual."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import httpx
from conftest import run_herd, write_config
from fake_runtime import FakeRuntime, Knobs
from test_supervisor import herd

from llamaherd import control, paths
from llamaherd.config import Config, load_config
from llamaherd.schema import KvCache

# A profile with room for a long prompt (the demo model's tokenizer makes ~5 tokens of
# each word below: ~2,600 tokens, well above kv_keep_min_tokens).
LONG = '\n[models.long]\nfile = "dense.gguf"\nctx = 8192\nparallel = 1\n'
LONG2 = '\n[models.long2]\nextends = "long"\n'
PROMPT = " ".join(f"w{i}" for i in range(700))


def complete(config: Config, model: str, prompt: str = PROMPT) -> dict:
    """One completion; its llama-server `timings` (prompt_n: tokens processed now)."""
    request = {"model": model, "prompt": prompt, "max_tokens": 2, "temperature": 0}
    answer = httpx.post(f"{config.server.public_url}/v1/completions", json=request, timeout=300)
    assert answer.status_code == 200, answer.text
    return answer.json()["timings"]


def kv_cache(config: Config, model: str) -> KvCache:
    return control.connect(config).status().kv_cache.get(model, KvCache())


def kv_files(state_dir: Path | None = None) -> list[Path]:
    return sorted(((state_dir or paths.state_dir()) / "kv").glob("*.bin"))


def daemon_log() -> str:
    return (paths.state_dir() / "daemon.log").read_text()


def swap_out_long(make_herd, extra: str = "", **server: object) -> tuple[Config, int]:
    """long answers PROMPT, then moe replaces it; the config and long's prompt tokens."""
    herd = make_herd(LONG + extra, **server)
    control.up(herd, "long")
    first = complete(herd, "long")
    assert first["prompt_n"] > 2000, first  # the whole prompt was processed
    control.up(herd, "moe")
    return herd, first["prompt_n"]


def test_a_long_prompt_is_not_processed_again_after_a_swap_back(make_herd) -> None:
    herd, prompt_n = swap_out_long(make_herd)
    saved = kv_cache(herd, "long").saved
    assert len(saved) == 1 and saved[0].tokens >= prompt_n and saved[0].bytes > 0
    assert len(kv_files()) == 1

    again = complete(herd, "long")
    assert again["prompt_n"] < 10, again  # the prefix came from the restored cache
    assert again["cache_n"] >= prompt_n - 10
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 1 and restore.tokens >= prompt_n
    assert restore.discarded == 0
    # The prompt it did not process again, at the speed long processed it the first time.
    assert restore.seconds_saved > 0
    metrics = httpx.get(f"{herd.server.api_url}/metrics", timeout=10).text
    assert f'herd_kv_restored_tokens_total{{model="long"}} {float(restore.tokens)}' in metrics
    assert 'herd_kv_prompt_seconds_saved_total{model="long"}' in metrics

    listed = run_herd("cache", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("long ")
    assert f"{saved[0].tokens} tokens" in listed.stdout
    cleared = run_herd("cache", "clear", "long")
    assert cleared.returncode == 0 and "removed 1 saved prompt caches" in cleared.stdout
    assert kv_files() == []


def test_changing_the_profile_discards_the_saved_cache(make_herd, tmp_path, model_files) -> None:
    herd, prompt_n = swap_out_long(make_herd)
    assert len(kv_files()) == 1
    # The same model with another context size: the saved cache no longer fits it.
    changed = LONG.replace("ctx = 8192", "ctx = 6144")
    write_config(tmp_path, model_files, herd.llama_server, changed, **_ports(herd))
    control.connect(herd).reload()

    again = complete(load_config(tmp_path / "herd.toml"), "long")
    assert again["prompt_n"] > 2000, again  # processed as usual
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 0 and restore.discarded == 1
    assert "discarded: its model file, llama-server or cache flags changed" in daemon_log()


def test_a_corrupted_cache_file_is_discarded_and_the_request_succeeds(make_herd) -> None:
    herd, _ = swap_out_long(make_herd)
    (file,) = kv_files()
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # the KV data, not the header: only herd notices
    file.write_bytes(bytes(data))

    again = complete(herd, "long")
    assert again["prompt_n"] > 2000, again
    restore = kv_cache(herd, "long").last_restore
    assert restore is not None and restore.files == 0 and restore.discarded == 1
    assert "discarded: its contents changed since it was saved" in daemon_log()
    assert kv_files() == [] or file not in kv_files()


def test_a_file_llama_server_refuses_is_discarded(make_herd) -> None:
    herd, _ = swap_out_long(make_herd)
    (file,) = kv_files()
    meta = file.with_suffix(".json")
    # A file herd's own check passes (its sidecar describes it) but llama-server refuses.
    file.write_bytes(b"not a llama.cpp state file" * 40)
    entry = json.loads(meta.read_text())
    entry.update(bytes=file.stat().st_size, sha256=hashlib.sha256(file.read_bytes()).hexdigest())
    meta.write_text(json.dumps(entry))

    again = complete(herd, "long")
    assert again["prompt_n"] > 2000, again
    assert "discarded: llama-server refused it" in daemon_log()


def test_the_budget_evicts_the_least_recently_used_file(make_herd) -> None:
    # One saved prompt (~0.7 MiB for the demo model) fits in 1 MiB; two do not.
    herd, _ = swap_out_long(make_herd, LONG2, kv_keep_budget_mb=1)
    (kept,) = kv_files()
    assert kept.name.startswith("long.")
    control.up(herd, "long2")
    complete(herd, "long2")
    control.up(herd, "moe")
    (kept,) = kv_files()
    assert kept.name.startswith("long2."), "the older file (long's) went first"
    assert "over the disk budget" in daemon_log()


def test_a_profile_can_opt_out(make_herd) -> None:
    herd = make_herd(LONG + "kv_keep = false\n")
    control.up(herd, "long")
    complete(herd, "long")
    control.up(herd, "moe")
    assert kv_files() == []
    assert complete(herd, "long")["prompt_n"] > 2000
    assert "--slot-save-path" not in " ".join(control.connect(herd).status().argv or [])


def _ports(config: Config) -> dict[str, object]:
    server = config.server
    return {
        "api_port": server.api_port,
        "port": server.port,
        "start_timeout": 60,
        "stop_timeout": 5,
        "max_loaded": 1,
    }


# -- in-process, on the fake runtime: what a real llama-server cannot stage on demand --
FULL_SLOT = {"id": 0, "n_prompt_tokens": 5000, "is_processing": False}


def test_a_slow_save_gives_up_after_the_timeout_and_the_swap_goes_on(tmp_path, caplog) -> None:
    fake = FakeRuntime(knobs={"a": Knobs(slots=(FULL_SLOT,), slot_action_delay=60)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, kv_keep_save_timeout=0.5) as supervisor:
            assert (await supervisor.switch("a")).ok
            began = time.monotonic()
            assert (await supervisor.switch("b")).ok  # a is saved (slowly), then stopped
            assert time.monotonic() - began < 5
            assert fake.alive("a") == []

    asyncio.run(scenario())
    assert "saving a's prompt cache took over 0.5s: given up" in caplog.text
    assert kv_files(tmp_path / "state") == []


def test_small_prompts_and_opted_out_profiles_are_not_saved(tmp_path) -> None:
    small = {**FULL_SLOT, "n_prompt_tokens": 1023}
    fake = FakeRuntime(
        knobs={"a": Knobs(slots=(small,)), "c": Knobs(slots=(FULL_SLOT,), slot_action_delay=60)}
    )

    async def scenario() -> None:
        async with herd(tmp_path, fake, "kv_keep = false\n") as supervisor:  # c opts out
            for model in ("a", "c", "b"):
                began = time.monotonic()
                assert (await supervisor.switch(model)).ok
                assert time.monotonic() - began < 5  # no save was even tried for c
        posts = [r for s in fake.servers for r in s.requests if r["path"].startswith("/slots/")]
        assert posts == []
        argv = {s.profile.id: s.profile.args for s in fake.servers}
        assert "--slot-save-path" in argv["a"] and "--slot-save-path" not in argv["c"]

    asyncio.run(scenario())


def test_the_dashboard_says_when_a_start_restored_the_prompt_cache(make_herd) -> None:
    import asyncio

    from test_tui import SIZE, dashboard, header_text, settle

    herd, prompt_n = swap_out_long(make_herd)
    control.up(herd, "long")  # back: its saved prompt comes with it
    restored = kv_cache(herd, "long").last_restore
    assert restored is not None and restored.tokens >= prompt_n

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            expected = f"prompt cache restored: {restored.tokens} tokens"
            await settle(app, pilot, lambda: expected in header_text(app))

    asyncio.run(scenario())

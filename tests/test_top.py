"""`herd top`'s snapshot: a typed answer (schema.Top) built from /status and /system, and
the plain text printed from it. The command end to end: tests/test_monitor.py."""

from __future__ import annotations

import json

from llamaherd import top
from llamaherd.cli.options import emit_json
from llamaherd.schema import LoadedModel, ServerLive, Status, SystemSnapshot, Top


def loaded(model: str, state: str) -> dict:
    return {"model": model, "state": state}


STATUS = Status.model_validate(
    {
        "daemon": {
            "pid": 1,
            "version": "0",
            "config": None,
            "url": "http://127.0.0.1:8080",
            "api_url": "http://127.0.0.1:8081",
            "started_at": 0.0,
            "uptime_s": 5.0,
            "llama_server": "llama-server",
        },
        **loaded("dense", "ready"),
        "loaded": [loaded("dense", "ready"), loaded("moe", "starting")],
        "stale": [],
        "waiting": 0,
        "last_error": None,
        "model_name": "Dense",
        "status": "",
    }
)
LIVE = {
    "model": "dense",
    "state": "starting",  # sampled a moment before /status said ready
    "pid": 42,
    "url": "http://127.0.0.1:9000",
    "tokens_per_s": 12.5,
    "prompt_tokens_per_s": None,
    "slots_active": 1,
    "slots_idle": 3,
    "ctx_used": [10],
    "n_ctx": [4096],
    "in_flight": 1,
    "requests_deferred": None,
    "kv_cache_usage": None,
    "tokens_predicted_total": None,
    "prompt_tokens_total": None,
    "rss": 3 * 1024**2,
    "cpu_percent": 50.0,
}
SYSTEM = SystemSnapshot.model_validate(
    {
        "gpus": [{"index": 0, "name": "Test GPU", "memory_used": 1024**3, "memory_total": 2**32}],
        "gpu_note": None,
        "system": None,
        "servers": [LIVE],
        "history": {
            "interval_s": 1.0,
            "t": [],
            "tokens_per_s": {},
            "gpu_memory_used": {},
            "gpu_utilization": {},
            "cpu_percent": [],
        },
        "sampled_at": 1000.0,
        "error": None,
    }
)


def test_the_snapshot_is_a_typed_answer_with_each_loaded_models_numbers() -> None:
    snapshot = top.snapshot(STATUS, SYSTEM)
    assert isinstance(snapshot, Top)
    dense, moe = snapshot.models
    # /status decides the state; /system's sample gives the numbers.
    assert isinstance(dense, ServerLive) and (dense.state, dense.tokens_per_s) == ("ready", 12.5)
    assert moe == LoadedModel(model="moe", state="starting")  # no numbers yet
    assert snapshot.current == "dense" and snapshot.gpus == SYSTEM.gpus


def test_top_json_prints_the_models_fields_flat(capsys) -> None:
    emit_json(top.snapshot(STATUS, SYSTEM))
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["current", "models", "gpus", "gpu_note", "system", "sampled_at"]
    dense, moe = printed["models"]
    assert dense == {**LIVE, "state": "ready", "gpus": [], "gpu_memory": None}
    assert moe == {"model": "moe", "state": "starting"}
    assert printed["gpus"][0]["name"] == "Test GPU"
    # What `herd top --json` prints parses back into the same answer.
    assert Top.model_validate(printed) == top.snapshot(STATUS, SYSTEM)


def test_the_text_shows_numbers_where_there_are_some() -> None:
    lines = top.render(top.snapshot(STATUS, SYSTEM)).splitlines()
    dense = next(line for line in lines if "dense" in line)
    assert dense.startswith("*dense") and "12.5" in dense and "1/4" in dense and "3.0 MiB" in dense
    moe = next(line for line in lines if "moe" in line)
    assert moe.startswith(" moe") and "starting" in moe and moe.split()[2:] == ["-"] * 6
    assert any(line.startswith("GPU 0  Test GPU  VRAM 1.0 GiB/4.0 GiB") for line in lines)

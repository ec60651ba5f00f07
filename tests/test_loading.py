"""Load progress: the stage and fraction read from llama-server's own log, in /status and
the `loading` events (issue 16 item 3)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import httpx
from fake_runtime import FakeRuntime, Knobs
from test_runtime import wait_for
from test_supervisor import herd, recorder, run, wait_until

from llamaherd.runtime import process
from llamaherd.runtime.loading import LoadProgress

# What llama-server b11434 printed loading gemma-3-270m with -lv 4 (stage lines only).
REAL_LOG = """\
0.00.026.045 I srv    load_model: loading model '/models/gemma-3-270m-q4_k_m.gguf'
0.00.026.107 I cmn  common_init_: fitting params to device memory ...
0.01.824.554 I llama_model_loader: loaded meta data with 33 key-value pairs and 236 tensors
0.03.008.103 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)
0.03.060.205 I llama_context: constructing llama_context
0.03.088.149 I cmn  common_init_: warming up the model with an empty run - please wait ...
0.08.523.336 I srv    load_model: initializing, n_slots = 4, n_ctx_slot = 1024
0.08.549.600 I srv  llama_server: model loaded
0.08.549.614 I srv  llama_server: listening on http://127.0.0.1:18932"""

# A llama-server stand-in that prints its tensor dots slowly, on one line.
DOTS = """
import sys, time
print("load_tensors: loading model tensors, this can take a while...", flush=True)
for _ in range(40):
    sys.stdout.write("."); sys.stdout.flush(); time.sleep(0.01)
time.sleep(60)
"""


def test_each_stage_of_a_real_load_moves_the_fraction_forward() -> None:
    progress = LoadProgress()
    seen = []
    for line in REAL_LOG.splitlines():
        progress.take(line)
        seen.append((progress.stage, progress.fraction))
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions) and fractions[0] > 0
    stages = list(dict.fromkeys(stage for stage, _ in seen))
    assert stages == [
        "loading model",
        "fitting to memory",
        "reading metadata",
        "reading tensors",
        "creating context",
        "warming up",
        "starting slots",
        "ready",
    ]
    assert seen[-1] == ("ready", 1.0)


def test_tensor_dots_fill_the_fraction_while_the_line_grows(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = await process.start(
            [sys.executable, "-c", DOTS], env=os.environ, port=0, run_dir=tmp_path, name="dots"
        )
        try:
            # 40 dots of 100: 40% of the tensor stage, though no line has ended.
            assert await wait_for(lambda: server.loading.fraction >= 0.4, timeout=10)
            assert server.loading.stage == "reading tensors"
            assert server.loading.fraction < 0.8
        finally:
            await server.stop(5)

    asyncio.run(scenario())


def test_status_and_loading_events_carry_the_stage_while_a_model_loads(tmp_path) -> None:
    fake = FakeRuntime(knobs={"a": Knobs(load_delay=1.5, load_log=("warming up the model",))})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            events = recorder(supervisor)
            switching = asyncio.ensure_future(supervisor.switch("a"))
            assert await wait_until(lambda: any(e["type"] == "loading" for e in events))
            loading = next(e for e in events if e["type"] == "loading")
            assert (loading["stage"], loading["progress"]) == ("loading model", 0.02)
            (starting,) = supervisor.status()["loaded"]
            assert (starting["stage"], starting["progress"]) == ("loading model", 0.02)
            assert (await switching).ok
            (ready,) = supervisor.status()["loaded"]
            assert (ready["stage"], ready["progress"]) == ("ready", 1.0)

    run(scenario)


def test_a_real_llama_server_reports_ready_in_status(daemon) -> None:
    config = daemon()
    with httpx.Client(base_url=config.server.api_url, timeout=120) as api:
        assert api.post("/switch", json={"model": "dense"}).json()["ok"]
        status = api.get("/status").json()
    assert (status["stage"], status["progress"]) == ("ready", 1.0)


def test_herd_up_hands_each_polled_fraction_to_its_bar(monkeypatch) -> None:
    """control.up's watcher: what /status says about the loading model reaches the
    callback (herd up's bar) in order, other models' entries do not, and it stops with
    the switch."""
    from types import SimpleNamespace

    from llamaherd import control

    monkeypatch.setattr(control, "PROGRESS_POLL_S", 0.01)
    answers = [(None, None), (0.2, "reading tensors"), (0.9, "warming up")]
    done = threading.Event()

    class Daemon:  # the two calls control makes, answering as the daemon does
        def status(self) -> SimpleNamespace:
            progress, stage = answers.pop(0) if answers else (1.0, "ready")
            if not answers:
                done.set()
            other = SimpleNamespace(model="dense", progress=0.5, stage="other")
            mine = SimpleNamespace(model="moe", progress=progress, stage=stage)
            return SimpleNamespace(loaded=[other, mine])

    seen: list[tuple[float, str]] = []
    control._report_progress(Daemon(), "moe", lambda f, s: seen.append((f, s)), done)
    assert seen[:2] == [(0.2, "reading tensors"), (0.9, "warming up")]

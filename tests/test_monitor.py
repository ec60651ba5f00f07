"""The samplers behind GET /system and `herd top`: GPU sources, tokens/s arithmetic, and a
real daemon with a real llama-server reporting live numbers (GPUs from the JSON fake)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import httpx
import pytest
from conftest import wait_until
from fake_runtime import FakeRuntime
from test_supervisor import herd, run

from llamaherd import control
from llamaherd.config import Config
from llamaherd.gpus import gpu_source
from llamaherd.monitor import FakeGpuSource, NvmlSource
from llamaherd.monitor.sampler import Sampler
from llamaherd.monitor.server import Rate, generated_total, parse_metrics, parse_slots
from llamaherd.schema import GpuProcess

FAKE_GPUS = Path(__file__).parent / "data" / "fake_gpus.json"
GB = 1024**3


# -- GPU sources --------------------------------------------------------------------------


def test_fake_gpus_have_nvml_shape_two_asymmetric_one_hot() -> None:
    reading = FakeGpuSource(FAKE_GPUS).sample()
    assert reading.note is None
    first, second = reading.gpus
    assert [g["index"] for g in reading.gpus] == [0, 1]
    assert round(first["memory_total"] / GB) == 24 and round(second["memory_total"] / GB) == 16
    assert first["temperature"] > 80 > second["temperature"]
    assert second["fan"] is None  # "not supported" is None, as from NVML
    for gpu in reading.gpus:
        assert set(gpu) >= {"name", "memory_used", "utilization", "power_draw", "clock_sm"}
        assert "child_process_memory" not in gpu  # the fake's own knob stays private
    assert first["processes"] == []  # no llama-server child of this test process
    assert second["processes"] == [{"pid": 1, "used_memory": 805306368}]


def test_fake_gpus_list_llama_server_children_like_nvml(tmp_path: Path) -> None:
    """A child process named llama-server shows on the GPU that has child_process_memory."""
    binary = tmp_path / "llama-server"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    child = subprocess.Popen([str(binary), "30"])
    try:
        assert wait_until(lambda: FakeGpuSource(FAKE_GPUS).sample().gpus[0]["processes"])
        first, second = FakeGpuSource(FAKE_GPUS).sample().gpus
        assert first["processes"] == [{"pid": child.pid, "used_memory": 4 * GB}]
        assert first["memory_used"] == 2 * GB + 4 * GB
        assert all(p["pid"] != child.pid for p in second["processes"])
    finally:
        child.kill()
        child.wait()


def test_fake_gpu_file_unreadable_is_a_note_not_a_crash(tmp_path: Path) -> None:
    reading = FakeGpuSource(tmp_path / "missing.json").sample()
    assert reading.gpus == [] and "missing.json" in (reading.note or "")


def test_env_selects_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_FAKE_GPUS", str(FAKE_GPUS))
    assert isinstance(gpu_source(), FakeGpuSource)
    monkeypatch.delenv("HERD_FAKE_GPUS")
    assert isinstance(gpu_source(), NvmlSource)


def test_nvml_without_a_driver_is_an_empty_list_and_a_reason() -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    source = NvmlSource()
    for _ in range(2):  # the failure is remembered, not retried into a crash
        reading = source.sample()
        assert reading.gpus == []
        assert "NVML" in (reading.note or "")
    source.close()


def test_nvml_unsupported_fields_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """NvmlSource's reading code against a stand-in pynvml module: a GPU without fan or
    power readings (NotSupported) still reports everything else."""

    class NVMLError(Exception):
        pass

    def unsupported(*_: object) -> None:
        raise NVMLError("Not Supported")

    process = types.SimpleNamespace(pid=4242, usedGpuMemory=3 * GB)
    stub = types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetName=lambda h: b"Tesla P40",
        nvmlDeviceGetUUID=lambda h: "GPU-1",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=5 * GB, total=24 * GB),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=60, memory=20),
        nvmlDeviceGetTemperature=lambda h, sensor: 70,
        nvmlDeviceGetPowerUsage=unsupported,
        nvmlDeviceGetEnforcedPowerLimit=unsupported,
        nvmlDeviceGetFanSpeed=unsupported,
        nvmlDeviceGetClockInfo=lambda h, clock: {1: 1300, 2: 3600}[clock],
        nvmlDeviceGetCudaComputeCapability=lambda h: (6, 1),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [process],
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [process],
    )
    monkeypatch.setitem(sys.modules, "pynvml", stub)
    (gpu,) = NvmlSource().sample().gpus
    assert gpu["name"] == "Tesla P40" and gpu["memory_total"] == 24 * GB
    assert gpu["utilization"] == 60 and gpu["temperature"] == 70
    assert gpu["power_draw"] is None and gpu["power_limit"] is None and gpu["fan"] is None
    assert (gpu["clock_sm"], gpu["clock_memory"]) == (1300, 3600)
    assert gpu["compute_cap"] == "6.1"  # what herd build --backend cuda compiles for
    assert gpu["processes"] == [{"pid": 4242, "used_memory": 3 * GB}]  # listed once


# -- tokens/s arithmetic -------------------------------------------------------------------

# What llama-server b11434 answered on /slots during a streaming request.
BUSY_SLOTS = [
    {"id": 0, "n_ctx": 2048, "speculative": False, "is_processing": False},
    {
        "id": 3,
        "n_ctx": 2048,
        "is_processing": True,
        "id_task": 409,
        "n_prompt_tokens": 466,
        "next_token": [{"has_next_token": True, "n_remain": 1544, "n_decoded": 456}],
    },
]


def test_slots_give_busy_idle_context_and_decoded_tokens() -> None:
    slots = parse_slots(BUSY_SLOTS)
    assert (slots["slots_active"], slots["slots_idle"]) == (1, 1)
    assert slots["ctx_used"] == [0, 466] and slots["n_ctx"] == [2048, 2048]
    assert slots["decoding"] == 456


def test_metrics_parse_llamacpp_counters() -> None:
    text = (
        "# TYPE llamacpp:tokens_predicted_total counter\n"
        "llamacpp:tokens_predicted_total 400\n"
        "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 2\n"
    )
    assert parse_metrics(text) == {"tokens_predicted_total": 400.0, "requests_deferred": 2.0}
    assert parse_metrics("not prometheus {{{") == {}


def test_tokens_per_s_counts_streaming_and_finished_requests_once() -> None:
    rate = Rate()
    # t=0: 100 tokens from finished requests, a stream has decoded 50 so far.
    assert (
        rate.update(generated_total({"tokens_predicted_total": 100}, {"decoding": 50}), 0.0) is None
    )
    # t=1: still streaming, 250 decoded: 200 tokens in one second.
    assert (
        rate.update(generated_total({"tokens_predicted_total": 100}, {"decoding": 250}), 1.0) == 200
    )
    # t=2: the stream ended at 300 tokens (now in the counter), nothing busy: 50 more.
    assert rate.update(generated_total({"tokens_predicted_total": 400}, {"decoding": 0}), 2.0) == 50
    # t=4: idle.
    assert rate.update(generated_total({"tokens_predicted_total": 400}, None), 4.0) == 0
    # A race between /slots and /metrics never gives a negative speed.
    assert rate.update(390, 5.0) == 0
    assert generated_total({}, None) is None


# -- a real daemon ------------------------------------------------------------------------


def stream_for(url: str, seconds: float) -> threading.Thread:
    """Back-to-back streaming chat requests through the gateway for `seconds`."""

    def run() -> None:
        deadline = time.monotonic() + seconds
        body = {
            "messages": [{"role": "user", "content": "count"}],
            "max_tokens": 1500,
            "stream": True,
            "ignore_eos": True,
        }
        while time.monotonic() < deadline:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    if time.monotonic() > deadline:
                        break

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_system_reports_fake_gpus_host_and_live_tokens_per_s(
    herd: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_FAKE_GPUS", str(FAKE_GPUS))  # before the daemon starts
    answer = control.up(herd, "dense")
    assert answer.ok, answer
    client = control.connect(herd)
    server_pid = answer.pid

    system = client.system()
    assert system.gpu_note is None
    totals = [round((g.memory_total or 0) / GB) for g in system.gpus]
    assert totals == [24, 16]
    host = system.system
    assert host and host.memory_total > 0 and host.cpu_count == len(host.cpu_per_core)
    assert host.disk and host.disk.path == str(herd.models_dir) and host.disk.total > 0

    # The llama-server is a child of the daemon, so the fake puts it on GPU 0, and the
    # sampler names its profile.
    assert wait_until(lambda: client.system().gpus[0].processes, timeout=5)
    gpu0 = client.system().gpus[0]
    assert GpuProcess(pid=server_pid, used_memory=4 * GB, profile="dense") in gpu0.processes
    assert all(p.profile is None for p in client.system().gpus[1].processes)

    streaming = stream_for(herd.server.public_url, seconds=8)
    seen: dict = {}

    def busy() -> bool:
        (server,) = client.system().servers
        seen.update(server)
        return (server.tokens_per_s or 0) > 0 and server.slots_active >= 1

    assert wait_until(busy, timeout=8, interval=0.3), seen
    assert seen["model"] == "dense" and seen["pid"] == server_pid
    assert seen["in_flight"] >= 1 and max(seen["ctx_used"]) > 0
    assert seen["rss"] > 0 and seen["gpus"] == [0] and seen["gpu_memory"] == 4 * GB
    streaming.join()

    history = client.system().history
    assert len(history.t) == len(history.cpu_percent) >= 2
    assert len(history.tokens_per_s["dense"]) == len(history.t)
    assert max(x or 0 for x in history.tokens_per_s["dense"]) > 0
    assert set(history.gpu_memory_used) == {"0", "1"}
    # What a sparkline needs, and no more: the last N samples only.
    recent = httpx.get(f"{herd.server.api_url}/system", params={"points": 2}, timeout=10)
    assert len(recent.json()["history"]["t"]) == 2 < len(history.t)


def test_status_counts_the_log_lines_that_logs_returns(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)

    def agree() -> bool:  # the log may still grow right after loading
        logs = client.logs(tail=100_000)
        (loaded,) = client.status().loaded
        return loaded.log_lines == logs.total == len(logs.lines) > 0

    assert wait_until(agree, timeout=5)


def test_system_without_gpus_says_why(herd: Config) -> None:
    control.up(herd, "dense")
    client = control.connect(herd)
    assert wait_until(lambda: client.system().servers, timeout=5)  # a sample a second
    system = client.system()
    if system.gpus:
        pytest.skip("this machine has NVIDIA GPUs")
    assert system.gpu_note and system.servers[0].model == "dense"


def test_herd_top_prints_a_snapshot(herd: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_FAKE_GPUS", str(FAKE_GPUS))
    control.up(herd, "dense")
    client = control.connect(herd)
    assert wait_until(lambda: client.system().servers, timeout=5)  # a sample a second
    command = [sys.executable, "-m", "llamaherd", "--config", str(herd.path), "top"]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)
    assert top["current"] == "dense"
    (model,) = top["models"]
    assert model["model"] == "dense" and model["state"] == "ready" and model["rss"] > 0
    assert [g["index"] for g in top["gpus"]] == [0, 1]

    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "*dense" in result.stdout and "ready" in result.stdout
    assert "GPU 0  NVIDIA GeForce RTX 4090" in result.stdout and "84°C" in result.stdout
    assert "RAM" in result.stdout and "CPU" in result.stdout


def test_the_sampler_leaves_llama_server_alone_while_nobody_watches(tmp_path) -> None:
    """A /slots or /metrics answer restarts llama-server's one-second wait before it
    notices a non-streaming client that left: poll only while a dashboard reads."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor, httpx.AsyncClient() as http:
            assert (await supervisor.switch("a")).ok
            sampler = Sampler(supervisor, http)
            await sampler.sample()
            assert fake.servers[0].requests == []
            assert sampler.watch() is False  # the first reader of GET /system
            await sampler.sample()
            assert {r["path"] for r in fake.servers[0].requests} >= {"/slots"}
            assert sampler.watch() is True

    run(scenario)

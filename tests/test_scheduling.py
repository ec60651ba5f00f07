"""Memory-aware scheduling (`max_loaded = "auto"`): keep what fits, evict what is idle,
place new models where there is room. The policy on plain figures, the memory model on
realistic GGUF shapes (written sparse), the supervisor on fake GPUs ($HERD_FAKE_GPUS) with
the fake runtime, and one daemon on real llama-servers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import wait_until as wait_until_sync
from fake_runtime import FakeRuntime, Knobs
from inprocess import herd as in_process_herd
from test_supervisor import herd, recorder, request, run, wait_until

from llamaherd import control
from llamaherd.config import parse_config
from llamaherd.daemon.api import create_app
from llamaherd.daemon.memory import CPU, Memory
from llamaherd.daemon.metrics import Metrics
from llamaherd.daemon.scheduler import Resident, make_room
from llamaherd.daemon.turns import Turns
from llamaherd.gguf import synth
from llamaherd.gguf.plan import GiB, Gpu, MiB

EIGHT_B = synth.Shape(
    n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=128256,
    weight_type="Q8_0", context_length=131072, name="sparse 8b",
)  # fmt: skip
THIRTY_TWO_B = synth.Shape(
    n_embd=5120, n_layer=64, n_head=40, n_head_kv=8, head_dim=128, n_ff=25600,
    n_vocab=151936, weight_type="Q8_0", context_length=40960, name="sparse 32b",
)  # fmt: skip


# --- the policy on plain figures --------------------------------------------------------


def fits_in(need: int):
    """A model needing `need` bytes on GPU0."""
    return lambda free: "here" if free.get("GPU0", 0) >= need else None


def resident(id: str, gb: int, used: float, **flags) -> Resident:
    return Resident(id, {"GPU0": gb * GiB}, last_used=used, loaded_at=0.0, **flags)


def test_room_is_made_by_the_fewest_bytes_the_oldest_on_a_tie() -> None:
    residents = [resident("big", 10, 1.0), resident("small", 4, 2.0), resident("other", 4, 3.0)]
    room = make_room(fits_in(4 * GiB), {"GPU0": 20 * GiB}, residents, now=100)
    assert [r.id for r in room.evict] == ["small"]  # 4 GB freed; "other" is used more lately
    room = make_room(fits_in(9 * GiB), {"GPU0": 20 * GiB}, residents, now=100)
    assert [r.id for r in room.evict] == ["small", "other"]  # 8 GB freed beat big's 10
    room = make_room(fits_in(11 * GiB), {"GPU0": 20 * GiB}, residents, now=100)
    assert [r.id for r in room.evict] == ["big"]  # small + other would leave only 10 free


def test_busy_and_persistent_models_are_never_evicted() -> None:
    residents = [
        resident("busy", 8, 1.0, busy=True),
        resident("kept", 8, 2.0, persistent=True),
        resident("idle", 2, 3.0),
    ]
    room = make_room(fits_in(8 * GiB), {"GPU0": 20 * GiB}, residents, now=100)
    assert room.evict == [] and [r.id for r in room.wait_for] == ["busy"]
    room = make_room(fits_in(30 * GiB), {"GPU0": 20 * GiB}, residents, now=100)
    assert room.refused and room.evict == [] and room.wait_for == []


def test_a_fresh_model_is_evicted_only_when_nothing_else_makes_room() -> None:
    fresh = Resident("fresh", {"GPU0": 8 * GiB}, last_used=1.0, loaded_at=95.0)
    settled = Resident("settled", {"GPU0": 8 * GiB}, last_used=2.0, loaded_at=0.0)
    room = make_room(
        fits_in(8 * GiB), {"GPU0": 20 * GiB}, [fresh, settled], min_resident=30, now=100
    )
    assert [r.id for r in room.evict] == ["settled"]  # though fresh was used less lately
    room = make_room(
        fits_in(16 * GiB), {"GPU0": 20 * GiB}, [fresh, settled], min_resident=30, now=100
    )
    assert {r.id for r in room.evict} == {"fresh", "settled"}


def test_a_count_cap_still_applies() -> None:
    residents = [resident("a", 1, 1.0), resident("b", 1, 2.0)]
    room = make_room(fits_in(1 * GiB), {"GPU0": 20 * GiB}, residents, max_loaded=2, now=100)
    assert [r.id for r in room.evict] == ["a"]


# --- the memory model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sparse_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sparse")
    synth.write(root / "eight.gguf", EIGHT_B, sparse=True)
    synth.write(root / "thirty-two.gguf", THIRTY_TWO_B, sparse=True)
    return root


def config_on(models_dir: Path, profiles: str, **server: object):
    settings = {"gpu_margin_mb": 0, "stop_timeout": 1, "start_timeout": 10, **server}
    lines = [f'models_dir = "{models_dir}"', "[server]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return parse_config("\n".join(lines) + "\n" + profiles, models_dir / "herd.toml")


EIGHTS = "".join(f'[models.{n}]\nfile = "eight.gguf"\nctx = 8192\n' for n in "abc")


def test_a_fit_profile_goes_whole_onto_the_fullest_gpu_that_holds_it(sparse_models) -> None:
    config = config_on(sparse_models, EIGHTS + '[models.big]\nfile = "thirty-two.gguf"\n')
    memory = Memory(config.server, gpus=[Gpu("GPU0", 24 * GiB), Gpu("GPU1", 16 * GiB)])
    a = memory.place(config.models["a"], memory.capacity())
    assert a is not None and a.gpus == (1,)  # the 16 GB card: the 24 GB one stays whole
    assert 8 * GiB < a.footprint["GPU1"] < 9 * GiB and a.footprint[CPU] < 1 * GiB
    free = {**memory.capacity(), "GPU1": 4 * GiB}  # another model holds the 16 GB card
    assert memory.place(config.models["a"], free).gpus == (0,)
    # 32B at 40k context needs both cards; with one of them busy it does not fit.
    big = config.models["big"]
    assert memory.place(big, memory.capacity()).gpus == (0, 1)
    assert memory.place(big, free) is None


def test_an_rpc_profile_is_not_counted_on_this_machines_gpus(sparse_models) -> None:
    """Its workers hold the layers: counting them here refused RPC models that fit."""
    rpc = '[models.far]\nfile = "thirty-two.gguf"\nrpc = ["10.0.0.2:50052"]\n'
    config = config_on(sparse_models, rpc)
    memory = Memory(config.server, gpus=[Gpu("GPU0", 8 * GiB)])
    placed = memory.place(config.models["far"], {"GPU0": 0, CPU: 0})
    assert placed is not None and placed.footprint == {}


def test_measured_buffers_correct_the_estimate_until_the_file_changes(sparse_models) -> None:
    config = config_on(sparse_models, EIGHTS)
    memory = Memory(config.server, sparse_models / "state", gpus=[Gpu("GPU0", 24 * GiB)])
    profile = config.models["a"]
    planned = memory.place(profile, memory.capacity())
    log = "CUDA0 model buffer size = 12288.00 MiB\nCPU_Mapped model buffer size = 500.00 MiB\n"
    measured = memory.measure(profile, planned, log)
    assert measured.measured and measured.footprint == {"GPU0": 12 * GiB, CPU: 500 * MiB}
    again = Memory(config.server, sparse_models / "state", gpus=[Gpu("GPU0", 24 * GiB)])
    corrected = again.place(profile, again.capacity())  # kept in the state dir
    assert corrected.measured and abs(corrected.footprint["GPU0"] - 12 * GiB) < MiB
    cpu_only = memory.measure(config.models["b"], planned, "CPU model buffer size = 9.00 MiB\n")
    assert not cpu_only.measured  # a CPU build with fake GPUs tells nothing about the plan
    (sparse_models / "eight.gguf").touch()
    assert not again.place(profile, again.capacity()).measured


# --- the supervisor on fake GPUs ---------------------------------------------------------


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def set_gpus(*sizes_gb: float) -> None:
        gpus = [
            {"name": f"fake {i}", "memory_total": int(gb * GiB)} for i, gb in enumerate(sizes_gb)
        ]
        path = tmp_path / "gpus.json"
        path.write_text(json.dumps({"gpus": gpus}))
        monkeypatch.setenv("HERD_FAKE_GPUS", str(path))

    return set_gpus


def eights(tmp_path: Path, sparse_models: Path, extra: str = "") -> str:
    """Profiles d, e, f on the 8B file (test_supervisor's a, b, c are placeholders)."""
    return (
        "".join(
            f'[models.{n}]\nfile = "{sparse_models / "eight.gguf"}"\nctx = 8192\n' for n in "def"
        )
        + extra
    )


def resident_ids(supervisor) -> set[str]:
    return {m["model"] for m in supervisor.status()["loaded"]}


def test_two_that_fit_stay_and_a_third_evicts_only_the_least_recently_used(
    tmp_path, sparse_models, fake_gpus
) -> None:
    fake_gpus(20)  # two 8B models at 8k context (8.6 GB each), not three
    fake = FakeRuntime()

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            assert (await sv.switch("d")).ok and (await sv.switch("e")).ok
            assert resident_ids(sv) == {"d", "e"}
            assert await request(sv, "d") == "d"  # e is now the least recently used
            assert (await sv.switch("f")).ok
            assert resident_ids(sv) == {"d", "f"}
            devices = {d["name"]: d for d in sv.status()["devices"]}
            assert set(devices["GPU0"]["used"]) == {"d", "f"} and devices["GPU0"]["free"] > 0

    run(scenario)


def test_a_request_waits_for_the_stream_on_the_model_whose_room_it_needs(
    tmp_path, sparse_models, fake_gpus
) -> None:
    fake_gpus(12)  # one 8B model at a time
    fake = FakeRuntime()

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            assert (await sv.switch("d")).ok
            async with sv.serving("d"):  # a long stream on d
                waiting = asyncio.ensure_future(request(sv, "e"))
                assert await wait_until(lambda: sv.waiting == 1)
                assert not waiting.done() and fake.alive("d") and not fake.alive("e")
            assert await waiting == "e"
            assert resident_ids(sv) == {"e"} and not fake.alive("d")

    run(scenario)


def test_requests_for_a_busy_model_go_first_until_max_swap_wait(
    tmp_path, sparse_models, fake_gpus
) -> None:
    """No swap back and forth while the loaded model has work (llama-swap #790), but a
    request for another model waits at most max_swap_wait before its swap is next."""
    fake_gpus(12)  # one 8B model at a time
    fake = FakeRuntime()

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        server = {"max_loaded": "auto", "gpu_margin_mb": 0, "max_swap_wait": 1.0}
        async with herd(tmp_path, fake, profiles, **server) as sv:
            assert (await sv.switch("d")).ok
            events = recorder(sv)
            async with sv.serving("d"):  # a long stream on d
                for_e = asyncio.ensure_future(request(sv, "e"))
                assert await wait_until(lambda: any(e["type"] == "room_wait" for e in events))
                assert await request(sv, "d") == "d"  # served at once: d still has work
                assert await wait_until(lambda: sv.models["d"].yielding)  # max_swap_wait
                late = asyncio.ensure_future(request(sv, "d"))
                assert await wait_until(lambda: sv.status()["queue"] == {"d": 1, "e": 1})
                assert not late.done() and not for_e.done()
            assert await for_e == "e"  # e's swap was next
            assert await late == "d"  # then d's, back again
            swaps = [e["model"] for e in events if e["type"] == "switch"]
            assert swaps == ["e", "d"]

    run(scenario)


def test_waiting_starts_go_by_priority(tmp_path) -> None:
    fake = FakeRuntime()
    fake.knobs["a"] = Knobs(load_delay=0.3)  # holds the turn while the others queue
    profiles = '[models.low]\nfile = "b.gguf"\n[models.high]\nfile = "c.gguf"\npriority = 10\n'

    async def scenario() -> None:
        async with herd(tmp_path, fake, profiles, max_loaded=1) as sv:
            first = asyncio.ensure_future(sv.switch("a"))
            assert await wait_until(lambda: len(fake.servers) == 1)
            low = asyncio.ensure_future(sv.switch("low"))  # asked first
            await asyncio.sleep(0)  # low is waiting for its turn before high asks
            high = asyncio.ensure_future(sv.switch("high"))
            await asyncio.gather(first, low, high)
            assert [s.profile.id for s in fake.servers] == ["a", "high", "low"]

    run(scenario)


def test_a_start_that_leaves_the_queue_gives_its_turn_on() -> None:
    async def scenario() -> None:
        turns = Turns()
        order: list[str] = []

        async def take(name: str, priority: int) -> None:
            async with turns.turn(priority):
                order.append(name)

        async with turns:  # held: the others queue
            gone = asyncio.ensure_future(take("gone", 5))
            kept = asyncio.ensure_future(take("kept", 1))
            await asyncio.sleep(0)
            gone.cancel()
        await kept
        assert order == ["kept"] and not turns.locked()

    run(scenario)


def test_a_persistent_model_holds_its_place(tmp_path, sparse_models, fake_gpus) -> None:
    fake_gpus(20)
    fake = FakeRuntime()
    extra = f'[models.p]\nfile = "{sparse_models / "eight.gguf"}"\nctx = 8192\npersistent = true\n'

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models, extra)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            assert (await sv.switch("p")).ok and (await sv.switch("d")).ok
            assert (await sv.switch("e")).ok  # p is the least recently used: d goes
            assert resident_ids(sv) == {"p", "e"}

    run(scenario)


def test_a_fresh_model_holds_its_place_while_an_older_one_can_go(
    tmp_path, sparse_models, fake_gpus
) -> None:
    fake_gpus(20)
    fake = FakeRuntime()

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        # Long enough that e is still fresh when f comes on a busy machine.
        server = {"max_loaded": "auto", "gpu_margin_mb": 0, "min_resident": 3}
        async with herd(tmp_path, fake, profiles, **server) as sv:
            assert (await sv.switch("d")).ok
            settled = lambda: time.monotonic() - sv.models["d"].loaded_at > 3  # noqa: E731
            assert await wait_until(settled, timeout=10)
            assert (await sv.switch("e")).ok
            assert await request(sv, "d") == "d"  # e, fresh, is the least recently used
            assert (await sv.switch("f")).ok
            assert resident_ids(sv) == {"e", "f"}  # d went: e was loaded < min_resident ago

    run(scenario)


def test_no_room_names_the_residents_and_the_need(tmp_path, sparse_models, fake_gpus) -> None:
    fake_gpus(20)
    fake = FakeRuntime()
    extra = (
        f'[models.p]\nfile = "{sparse_models / "eight.gguf"}"\nctx = 8192\npersistent = true\n'
        f'[models.huge]\nfile = "{sparse_models / "thirty-two.gguf"}"\n'
        'placement = { n_gpu_layers = "all" }\n'
    )

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models, extra)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            assert (await sv.switch("p")).ok
            result = await sv.switch("huge")
            assert not result.ok and not fake.alive("huge")
            assert "no room for huge" in result.error and "p (GPU0 8.5" in result.error
            assert "persistent" in result.error and "it needs GPU0 3" in result.error
            assert resident_ids(sv) == {"p"} and sv.current == "p"

    run(scenario)


def test_models_go_where_the_room_is_and_measured_figures_count(
    tmp_path, sparse_models, fake_gpus
) -> None:
    fake_gpus(24, 16)
    fake = FakeRuntime()
    # e reports 16 GiB on its GPU: from then on the scheduler counts that, not 8.6.
    fake.knobs["e"] = Knobs(load_log=("CUDA0 model buffer size = 16384.00 MiB",))

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            assert (await sv.switch("d")).ok and (await sv.switch("e")).ok
            assert fake.alive("d")[0].profile.gpus == [1]  # the 16 GB card held it whole
            assert fake.alive("e")[0].profile.gpus == [0]  # then the 24 GB one
            loaded = {m["model"]: m for m in sv.status()["loaded"]}
            assert loaded["e"]["memory_measured"] and loaded["e"]["gpus"] == [0]
            assert loaded["e"]["memory"]["GPU0"] == 16 * GiB
            # 8 GB left on GPU0 and 7.4 on GPU1: f no longer fits on one card (counted at
            # the estimate, GPU0 would have 15.4 left), so it is split across both.
            assert (await sv.switch("f")).ok
            assert fake.alive("f")[0].profile.gpus == [0, 1]
            assert resident_ids(sv) == {"d", "e", "f"}

    run(scenario)


def test_nvmls_figure_for_the_process_counts_its_cuda_context(
    tmp_path, sparse_models, monkeypatch
) -> None:
    fake = FakeRuntime()
    fake.knobs["d"] = Knobs(load_delay=0.3, load_log=("CUDA0 model buffer size = 8192.00 MiB",))

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        async with herd(tmp_path, fake, profiles, max_loaded="auto", gpu_margin_mb=0) as sv:
            starting = asyncio.ensure_future(sv.switch("d"))
            assert await wait_until(lambda: len(fake.servers) == 1)
            process = {"pid": fake.servers[0].pid, "used_memory": 9 * GiB}  # buffers + context
            gpu = {"memory_total": 24 * GiB, "processes": [process]}
            (tmp_path / "nvml.json").write_text(json.dumps({"gpus": [gpu]}))
            monkeypatch.setenv("HERD_FAKE_GPUS", str(tmp_path / "nvml.json"))
            assert (await starting).ok
            loaded = sv.status()["loaded"][0]
            assert loaded["memory_measured"] and loaded["memory"]["GPU0"] == 9 * GiB

    run(scenario)


def test_the_api_says_what_a_start_would_evict_without_starting(
    tmp_path, sparse_models, fake_gpus
) -> None:
    fake_gpus(12)
    fake = FakeRuntime()

    async def scenario() -> None:
        profiles = eights(tmp_path, sparse_models)
        # 1 GiB of RAM for models, whatever this machine has: the 32B cannot spill over.
        ram_margin = psutil.virtual_memory().total // MiB - 1024
        server = {"max_loaded": "auto", "gpu_margin_mb": 0, "ram_margin_mb": ram_margin}
        async with herd(tmp_path, fake, profiles, **server) as sv, httpx.AsyncClient() as http:
            app = create_app(sv, Metrics(sv, http), on_shutdown=lambda: None, on_reload=dict)
            api = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api")
            assert (await sv.switch("d")).ok
            answer = (await api.post("/admission", json={"model": "e"})).json()
            assert answer["evict"] == ["d"] and not answer["fits"] and not answer["refused"]
            assert 8 * GiB < answer["need"]["GPU0"] < 9 * GiB
            async with sv.serving("d"):
                answer = (await api.post("/admission", json={"model": "e"})).json()
                assert answer["wait_for"] == ["d"] and answer["evict"] == []
            huge = {"file": str(sparse_models / "thirty-two.gguf"), "ctx": 40960}
            answer = (await api.post("/admission", json=huge)).json()
            assert answer["refused"] and "no room for plan" in answer["refused"]
            unknown = await api.post("/admission", json={"model": "nope"})
            assert unknown.status_code == 404 and unknown.json()["error"] == "unknown model: nope"
            assert resident_ids(sv) == {"d"} and not fake.alive("e")  # nothing started

    run(scenario)


# --- a daemon on real llama-servers -----------------------------------------------------


def test_daemon_keeps_what_fits_on_fake_gpus(make_herd, tmp_path, monkeypatch, capsys) -> None:
    copies = "".join(
        f'\n[models.{name}]\nfile = "dense.gguf"\nctx = 2048\n' for name in ("dense2", "dense3")
    )
    herd_config = make_herd(copies, max_loaded="auto", gpu_margin_mb=0, min_resident=0)
    memory = Memory(herd_config.server, gpus=[Gpu("GPU0", 64 * GiB)])
    need = memory.alone(herd_config.models["dense"]).footprint["GPU0"]
    total = 2 * need + need // 2  # two fit, not three
    fake = tmp_path / "gpus.json"
    fake.write_text(json.dumps({"gpus": [{"name": "tiny", "memory_total": total}]}))
    monkeypatch.setenv("HERD_FAKE_GPUS", str(fake))
    client = control.connect(herd_config)
    assert control.up(herd_config, "dense").ok
    assert control.up(herd_config, "dense2").ok
    assert {m.model for m in client.status().loaded} == {"dense", "dense2"}
    assert control.up(herd_config, "dense3").ok
    status = client.status()
    assert {m.model for m in status.loaded} == {"dense2", "dense3"}  # dense was LRU
    assert [d.name for d in status.devices] == ["GPU0", "CPU"]
    assert set(status.devices[0].used) == {"dense2", "dense3"}
    # `herd plan --beside-running` asks the daemon: dense again would evict dense2 (LRU).
    code, out, _ = in_process_herd(
        capsys, monkeypatch, "--config", str(herd_config.path), "plan",
        str(herd_config.models["dense"].file), "--ctx", "2048", "--beside-running",
    )  # fmt: skip
    assert code == 0 and "after stopping dense2 (idle)" in out and "GPU0" in out
    code, out, _ = in_process_herd(capsys, monkeypatch, "--config", str(herd_config.path), "status")
    assert code == 0 and "also     dense2 (ready)" in out
    gpu_line = next(line for line in out.splitlines() if line.startswith("GPU0"))
    assert "free of" in gpu_line and "dense2" in gpu_line and "dense3" in gpu_line


def test_a_stream_on_real_llama_server_finishes_before_its_room_is_taken(
    make_herd, tmp_path, monkeypatch
) -> None:
    long = '\n[models.long]\nfile = "dense.gguf"\nctx = 4096\n'
    herd_config = make_herd(long, max_loaded="auto", gpu_margin_mb=0)
    memory = Memory(herd_config.server, gpus=[Gpu("GPU0", 64 * GiB)])
    needs = [memory.alone(herd_config.models[m]).footprint["GPU0"] for m in ("long", "moe")]
    fake = tmp_path / "gpus.json"  # one of them at a time
    fake.write_text(json.dumps({"gpus": [{"memory_total": max(needs) + min(needs) // 2}]}))
    monkeypatch.setenv("HERD_FAKE_GPUS", str(fake))
    assert control.up(herd_config, "long").ok
    client = control.connect(herd_config)
    gateway = herd_config.server.public_url
    stream = {"model": "long", "prompt": "Once", "max_tokens": 3000, "stream": True}
    stream |= {"ignore_eos": True}  # llama-server's: generate all 3000 tokens
    chunks: list[dict] = []

    def read_stream() -> None:
        with httpx.stream("POST", f"{gateway}/v1/completions", json=stream, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    chunks.append(json.loads(line.removeprefix("data: ")))

    def ask_moe() -> httpx.Response:
        body = {"model": "moe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        return httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        streaming = pool.submit(read_stream)
        assert wait_until_sync(lambda: len(chunks) > 0)
        for_moe = pool.submit(ask_moe)
        assert wait_until_sync(lambda: client.status().queue == {"moe": 1})
        streaming.result()
        finished = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
        assert finished[-1] == "length"  # all 3000 tokens: not cut short by the swap
        assert for_moe.result().status_code == 200
    assert {m.model for m in client.status().loaded} == {"moe"}

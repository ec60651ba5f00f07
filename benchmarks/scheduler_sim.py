"""Replay request traces through herd's scheduler and through count- and group-based ones.

Run it from the project root:

    .venv/bin/python benchmarks/scheduler_sim.py [--seed N] [--gpus 24,16] [--ram 64] [--json]

The machine is the original setup's (a 24 GB and a 16 GB GPU, 64 GB of RAM) and its six
models. Their sizes come from GGUF headers of the real models' shapes, written as sparse
files by gguf/synth.py (SHAPES below says how close each comes); what each needs and where
it goes comes from herd's memory model (daemon/memory.py's `Memory.place`), and the
decisions from herd's policy (daemon/scheduler.py's `make_room`), both called as the
daemon calls them. Only the clock is simulated: a discrete-event loop in which

- a load takes `file bytes / LOAD_RATE + START_S` (the weights read from disk at 2 GB/s,
  plus 5 s for the CUDA context, the KV cache and the warm-up); one load at a time;
- a model serves one request at a time (llama-server with one slot), its queue in order;
- clients are closed loops: each request is sent `gap` seconds after the client's last
  answer, so a slow swap delays the rest of the session as it would a real agent;
- waiting requests are taken in arrival order, and a load takes every waiting request
  for its model along (requests are grouped by model).

Policies: herd's `auto` (memory decides); `max_loaded` 1 and 2 (the count decides, least
recently used out, as llama-swap's and herd's count cap do: a count policy does not look
at memory, so when the models it keeps together exceed a device the start fails with
out-of-memory after its load time, counted in `oom`; then the others are stopped, once
idle, and it is loaded again);
and hand-written llama-swap groups (GROUPS).

Reported per trace and policy: loads (swaps), seconds spent loading, p50/p95 of the wait
from a request's arrival to the start of its service, and out-of-memory starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import random
import statistics
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llamaherd.config import parse_config
from llamaherd.daemon.memory import Bytes, Memory, Placement
from llamaherd.daemon.scheduler import Resident, free_after, make_room
from llamaherd.gguf import synth
from llamaherd.gguf.plan import GiB, Gpu

LOAD_RATE = 2e9  # bytes per second from disk
START_S = 5.0  # CUDA context, KV cache allocation, warm-up

# The real models' shapes, as far as synth's llama architecture reaches (dense or MoE
# attention layers only). GLM-4.7 Flash: 47 layers, 2048 wide, 64 experts (4 used) of
# 1536, 154,880 tokens; its MLA cache (576 values per token and layer) is written as 2 KV
# heads of 128 (512 values). GPT-OSS 120B: 36 layers, 2880 wide, 64 heads and 8 KV heads
# of 64, 128 experts (4 used) of 2880, 201,088 tokens; all weights MXFP4 (the real file
# keeps attention and embeddings in F16: 62 GB written against 65 GB), no sliding window
# (the real one has a 128-token window on every other layer: the KV cache here is about
# twice as big). Qwen3-Next / Qwen3-Coder-Next 80B-A3B: 48 layers, 2048 wide, 512 experts
# (10 used) of 512, 151,936 tokens; only 12 of its 48 layers keep a KV cache (2 heads of
# 256), the others are linear attention, so here every layer has one KV head of 128: the
# same cache bytes. Weight types are uniform (Q4_K for Q4_K_M, Q5_K for UD-Q5_K_XL), so
# the files come out 1-5% smaller than the real ones (which keep some tensors wider).
_GLM = synth.Shape(
    n_embd=2048, n_layer=47, n_head=20, n_head_kv=2, head_dim=128, n_ff=1536,
    n_vocab=154880, n_expert=64, n_expert_used=4, weight_type="Q8_0",
    context_length=202752, name="GLM-4.7 Flash Q8_0",
)  # fmt: skip
SHAPES = {
    "glm-q4.gguf": dataclasses.replace(_GLM, weight_type="Q4_K", name="GLM-4.7 Flash Q4_K_M"),
    "glm-q8.gguf": _GLM,
    "gpt-oss.gguf": synth.Shape(
        n_embd=2880,
        n_layer=36,
        n_head=64,
        n_head_kv=8,
        head_dim=64,
        n_ff=2880,
        n_vocab=201088,
        n_expert=128,
        n_expert_used=4,
        weight_type="MXFP4",
        context_length=131072,
        name="GPT-OSS 120B",
    ),  # fmt: skip
    "qwen3-next.gguf": synth.Shape(
        n_embd=2048,
        n_layer=48,
        n_head=16,
        n_head_kv=1,
        head_dim=128,
        n_ff=512,
        n_vocab=151936,
        n_expert=512,
        n_expert_used=10,
        weight_type="Q5_K",
        context_length=262144,
        name="Qwen3-Next-80B-A3B UD-Q5_K_XL",
    ),  # fmt: skip
}

# The original's profiles (README's herd.toml): all placed by `fit`; the experimental GLM
# profile runs the Q8_0 file with its own settings. Speeds and samplers do not matter here.
PROFILES = """
[models.glm-flash-q4]
file = "glm-q4.gguf"
ctx = 131072
placement = { fit = true }
[models.glm-flash-q8]
file = "glm-q8.gguf"
ctx = 131072
placement = { fit = true }
[models.glm-flash-exp]
file = "glm-q8.gguf"
ctx = 131072
flash_attn = "on"
placement = { fit = true }
[models.gpt-oss-120b]
file = "gpt-oss.gguf"
ctx = 131072
placement = { fit = true }
[models.qwen3-coder-ud-q5]
file = "qwen3-next.gguf"
ctx = 262144
flash_attn = "on"
cache_type_k = "q8_0"
cache_type_v = "q8_0"
placement = { fit = true }
[models.qwen3-next-ud-q5]
file = "qwen3-next.gguf"
ctx = 262144
placement = { fit = true }
"""

# What a careful llama-swap user writes for these six: the coding agent's pair may run
# together (swap = false), the other four one at a time; each group exclusive (starting a
# member stops the other group's models).
GROUPS = {
    "coding": (False, ("qwen3-coder-ud-q5", "glm-flash-q4")),
    "other": (True, ("glm-flash-q8", "glm-flash-exp", "gpt-oss-120b", "qwen3-next-ud-q5")),
}


# -- the machine ---------------------------------------------------------------------------
class Machine:
    """The devices, the profiles, and herd's memory model with its answers cached: the
    planner takes about a second per call, and a trace asks the same questions often."""

    def __init__(self, models_dir: Path, gpus_gb: list[int], ram_gb: int) -> None:
        for name, shape in SHAPES.items():
            path = models_dir / name
            if not path.exists():
                synth.write(path, shape, sparse=True)
        text = f'models_dir = "{models_dir}"\n' + PROFILES
        config = parse_config(text, models_dir / "herd.toml")
        self.settings = config.server
        self.profiles = config.models
        gpus = [Gpu(f"GPU{i}", gb * GiB) for i, gb in enumerate(gpus_gb)]
        self.memory = Memory(self.settings, gpus=gpus, host_memory=ram_gb * GiB)
        self.capacity = self.memory.capacity()
        self._placed: dict[tuple[str, tuple[tuple[str, int], ...]], Placement | None] = {}

    def place(self, model: str, free: Bytes) -> Placement | None:
        key = (model, tuple(sorted(free.items())))
        if key not in self._placed:
            self._placed[key] = self.memory.place(self.profiles[model], free)
        return self._placed[key]

    def alone(self, model: str) -> Bytes:
        placed = self.place(model, self.capacity)
        assert placed is not None, f"{model} does not fit this machine even alone"
        return placed.footprint

    def load_seconds(self, model: str) -> float:
        return self.profiles[model].file.stat().st_size / LOAD_RATE + START_S


def fits(need: Bytes, free: Bytes) -> bool:
    return all(n <= free.get(device, 0) for device, n in need.items() if n)


# -- traces ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    gap: float  # seconds after the client's previous answer
    model: str
    seconds: float  # service time


@dataclass(frozen=True)
class Trace:
    name: str
    clients: tuple[tuple[Step, ...], ...]


def agent_trace(rng: random.Random, steps: int = 150) -> Trace:
    """A coding agent: its main model in a tool loop, a small fast model for background
    calls (titles, summaries, command checks) from a second client, and now and then a
    few calls to a third model (a reasoning sub-agent)."""
    main: list[Step] = []
    while len(main) < steps:
        if rng.random() < 0.04:
            for _ in range(rng.randint(1, 3)):
                main.append(Step(rng.uniform(2, 10), "qwen3-next-ud-q5", rng.uniform(20, 60)))
        main.append(Step(rng.uniform(2, 10), "qwen3-coder-ud-q5", rng.uniform(8, 40)))
    background = [
        Step(rng.expovariate(1 / 45), "glm-flash-q4", rng.uniform(1, 4))
        for _ in range(steps * 2 // 3)
    ]
    return Trace("agent", (tuple(main), tuple(background)))


def chat_trace(rng: random.Random, turns: int = 60) -> Trace:
    """A chat user who reads and types between turns and changes model now and then."""
    choices = ["glm-flash-q8", "gpt-oss-120b", "qwen3-next-ud-q5", "glm-flash-q4"]
    model, steps = choices[0], []
    for _ in range(turns):
        if rng.random() < 0.15:
            model = rng.choice([m for m in choices if m != model])
        steps.append(Step(rng.uniform(20, 240), model, rng.uniform(10, 60)))
    return Trace("chat", (tuple(steps),))


def sweep_trace(rng: random.Random, machine: Machine, per_model: int = 10) -> Trace:
    """A benchmark over every model, one after the other, requests back to back."""
    steps = [
        Step(0.5, model, rng.uniform(15, 45))
        for model in machine.profiles
        for _ in range(per_model)
    ]
    return Trace("sweep", (tuple(steps),))


# -- policies: which residents to stop so that `model` can start ------------------------------
@dataclass
class Decision:
    evict: list[str] = field(default_factory=list)
    footprint: Bytes = field(default_factory=dict)
    wait: bool = False  # a model that must go is serving: ask again when it is done
    oom: bool = False  # the start fails: the policy keeps more than the devices hold


Policy = Callable[[Machine, str, list[Resident], float], Decision]


def herd_auto(machine: Machine, model: str, residents: list[Resident], now: float) -> Decision:
    room = make_room(
        lambda free: machine.place(model, free),
        machine.capacity,
        residents,
        max_loaded=None,
        min_resident=machine.settings.min_resident,
        now=now,
    )
    if room.refused:
        raise SystemExit(f"herd refused {model}: {room.refused}")
    if room.placed is None:
        return Decision(wait=True)
    return Decision([r.id for r in room.evict], room.placed.footprint)


def count_lru(cap: int) -> Policy:
    """herd's `max_loaded = N` (and llama-swap's count) on their own: unlimited memory,
    the count the only check."""

    def decide(machine: Machine, model: str, residents: list[Resident], now: float) -> Decision:
        need = machine.alone(model)
        unlimited = {device: 1 << 60 for device in machine.capacity}
        room = make_room(
            lambda free: need,
            unlimited,
            residents,
            max_loaded=cap,
            min_resident=machine.settings.min_resident,
            now=now,
        )
        if room.placed is None:
            return Decision(wait=True)
        return _checked(machine, need, residents, [r.id for r in room.evict])

    return decide


def groups(machine: Machine, model: str, residents: list[Resident], now: float) -> Decision:
    """llama-swap's groups: starting a model stops every model of the other groups, and in
    a group with swap = true the other members too."""
    swap, members = next(g for g in GROUPS.values() if model in g[1])
    evict = [r.id for r in residents if r.id not in members or swap]
    if any(r.busy for r in residents if r.id in evict):
        return Decision(wait=True)
    return _checked(machine, machine.alone(model), residents, evict)


def _checked(
    machine: Machine, need: Bytes, residents: list[Resident], evict: list[str]
) -> Decision:
    gone = [r for r in residents if r.id in evict]
    oom = not fits(need, free_after(machine.capacity, residents, gone))
    return Decision(evict, need, oom=oom)


POLICIES: dict[str, Policy] = {
    "herd auto": herd_auto,
    "max_loaded = 1": count_lru(1),
    "max_loaded = 2": count_lru(2),
    "llama-swap groups": groups,
}


# -- the simulation -------------------------------------------------------------------------
@dataclass
class Request:
    client: int
    index: int
    arrival: float


@dataclass
class Loaded:
    footprint: Bytes
    ready_at: float
    last_used: float
    queue: deque[Request] = field(default_factory=deque)
    serving: bool = False


@dataclass
class Result:
    trace: str
    policy: str
    requests: int
    loads: int
    load_seconds: float
    wait_p50: float
    wait_p95: float
    oom: int


def simulate(machine: Machine, trace: Trace, name: str, policy: Policy) -> Result:
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def at(time: float, kind: str, what: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (time, seq, kind, what))

    loaded: dict[str, Loaded] = {}
    waiting: list[Request] = []  # for models not loaded, in arrival order
    loading_until = 0.0
    failed: set[str] = set()
    loads, load_seconds, oom, waits = 0, 0.0, 0, []

    def step(req: Request) -> Step:
        return trace.clients[req.client][req.index]

    def dispatch(now: float) -> None:
        nonlocal loading_until, loads, load_seconds, oom
        for slot in loaded.values():
            if not slot.serving and slot.queue and slot.ready_at <= now:
                req = slot.queue.popleft()
                slot.serving = True
                waits.append(now - req.arrival)
                at(now + step(req).seconds, "done", req)
        if now < loading_until or not waiting:
            return
        model = step(waiting[0]).model
        residents = [
            Resident(m, s.footprint, s.last_used, s.ready_at, busy=s.serving or bool(s.queue))
            for m, s in loaded.items()
        ]
        seconds = machine.load_seconds(model)
        if model in failed:  # its start ran out of memory: the others go first
            if any(r.busy for r in residents):
                return
            failed.discard(model)
            decision = Decision([r.id for r in residents], machine.alone(model))
        else:
            decision = policy(machine, model, residents, now)
        if decision.wait:
            return
        for gone in decision.evict:
            del loaded[gone]
        loads, load_seconds = loads + 1, load_seconds + seconds
        loading_until = now + seconds
        if decision.oom:  # the start fails once loaded; its requests wait for a retry
            oom += 1
            failed.add(model)
            at(loading_until, "failed", model)
            return
        slot = Loaded(decision.footprint, loading_until, loading_until)
        slot.queue.extend(r for r in waiting if step(r).model == model)
        waiting[:] = [r for r in waiting if step(r).model != model]
        loaded[model] = slot
        at(loading_until, "loaded", model)

    def arrive(req: Request, now: float) -> None:
        slot = loaded.get(step(req).model)
        (slot.queue if slot else waiting).append(req)

    for client, steps in enumerate(trace.clients):
        at(steps[0].gap, "arrive", Request(client, 0, steps[0].gap))
    while events:
        now, _, kind, what = heapq.heappop(events)
        if kind == "arrive":
            assert isinstance(what, Request)
            arrive(what, now)
        elif kind == "done":
            assert isinstance(what, Request)
            slot = loaded[step(what).model]
            slot.serving, slot.last_used = False, now
            steps = trace.clients[what.client]
            if what.index + 1 < len(steps):
                gap = steps[what.index + 1].gap
                at(now + gap, "arrive", Request(what.client, what.index + 1, now + gap))
        dispatch(now)
    quantiles = statistics.quantiles(waits, n=20, method="inclusive")
    return Result(
        trace.name,
        name,
        len(waits),
        loads,
        round(load_seconds, 1),
        round(statistics.median(waits), 1),
        round(quantiles[18], 1),
        oom,
    )


def run_all(machine: Machine, seed: int, policies: dict[str, Policy] = POLICIES) -> list[Result]:
    traces = [
        agent_trace(random.Random(seed)),
        chat_trace(random.Random(seed + 1)),
        sweep_trace(random.Random(seed + 2), machine),
    ]
    return [simulate(machine, t, name, p) for t in traces for name, p in policies.items()]


def table(results: list[Result]) -> str:
    lines = [
        "| trace | policy | requests | loads | loading (s) | wait p50 (s) | wait p95 (s) | OOM |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.trace} | {r.policy} | {r.requests} | {r.loads} | {r.load_seconds:.0f} "
            f"| {r.wait_p50:.1f} | {r.wait_p95:.1f} | {r.oom} |"
        )
    return "\n".join(lines)


def footprints(machine: Machine) -> str:
    lines = ["| model | file | load (s) | alone: per device |", "|---|---:|---:|---|"]
    for model, profile in machine.profiles.items():
        size = profile.file.stat().st_size / 1e9
        need = ", ".join(f"{d} {n / GiB:.1f} GiB" for d, n in machine.alone(model).items() if n)
        lines.append(f"| {model} | {size:.1f} GB | {machine.load_seconds(model):.0f} | {need} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gpus", default="24,16", help="GPU sizes in GiB (default 24,16)")
    parser.add_argument("--ram", type=int, default=64, help="host RAM in GiB (default 64)")
    parser.add_argument("--models", type=Path, help="where the sparse GGUFs go (default: temp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    gpus = [int(x) for x in args.gpus.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = args.models or Path(tmp)
        models_dir.mkdir(parents=True, exist_ok=True)
        machine = Machine(models_dir, gpus, args.ram)
        results = run_all(machine, args.seed)
        if args.json:
            print(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
        else:
            print(footprints(machine) + "\n\n" + table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scheduling simulation (benchmarks/scheduler_sim.py) replays a coding agent's
requests through herd's `make_room` and memory model: where the agent's models fit side
by side, `auto` keeps them and swaps far less than a count cap; on the original 24 + 16 GB
machine, where each of its models alone fills both GPUs, it keeps the pair by moving more
of the MoE coder's experts to RAM, and, unlike `max_loaded = 2`, never starts a model
that runs out of memory."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

SIM_PATH = Path(__file__).parent.parent / "benchmarks" / "scheduler_sim.py"


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location("scheduler_sim", SIM_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduler_sim"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-models")  # the sparse GGUFs, written once


def agent_results(sim, models_dir: Path, gpus_gb: list[int], ram_gb: int) -> dict:
    machine = sim.Machine(models_dir, gpus_gb, ram_gb)
    trace = sim.agent_trace(random.Random(1), steps=30)
    policies = {k: sim.POLICIES[k] for k in ("herd auto", "max_loaded = 1", "max_loaded = 2")}
    return {name: sim.simulate(machine, trace, name, p) for name, p in policies.items()}


def test_auto_keeps_the_agents_models_that_fit_together_and_swaps_less(sim, models_dir) -> None:
    results = agent_results(sim, models_dir, [48, 48], 128)
    auto = results["herd auto"]
    assert auto.requests == results["max_loaded = 1"].requests > 30
    for cap in ("max_loaded = 1", "max_loaded = 2"):
        assert auto.loads < results[cap].loads, cap
        assert auto.load_seconds < results[cap].load_seconds, cap
    assert auto.oom == 0
    assert auto.wait_p95 < results["max_loaded = 1"].wait_p95


def test_on_the_original_machine_auto_swaps_less_and_never_overcommits(sim, models_dir) -> None:
    """Before MoE experts could move to RAM beside another model, auto swapped exactly as
    often as max_loaded = 1 here: each model's alone placement fills both GPUs."""
    results = agent_results(sim, models_dir, [24, 16], 64)
    auto = results["herd auto"]
    assert auto.oom == 0 and results["max_loaded = 2"].oom > 0
    for cap in ("max_loaded = 1", "max_loaded = 2"):
        assert auto.loads < results[cap].loads, cap
        assert auto.load_seconds < results[cap].load_seconds, cap

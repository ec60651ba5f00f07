"""What `herd bench speed` reports is llama-server's own measurement, and the benchmark
that holds it to llama-bench runs.

Speed itself is measured in benchmarks/speed_vs_llama_bench.py, never asserted here (on
shared cores a timed test flips direction from run to run). What can be asserted: the
prompt and generation tokens/s herd stores are the figures llama-server printed for
those very requests (its log's print_timing lines), not a clock on herd's side under
their name; and the benchmark script runs end to end and prints its table.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llamaherd import paths
from llamaherd.bench import speed
from llamaherd.bench.target import herd_targets, prepare
from llamaherd.llamacpp import build
from llamaherd.store import Store

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "speed_vs_llama_bench.py"
# llama-server's line per request: "prompt eval time = 12.34 ms / 64 tokens (... ms per
# token, 5186.38 tokens per second)", then "       eval time = ..." for the generation.
TIMING = re.compile(r"\| +(prompt eval|eval) time = .*?([\d.]+) tokens per second\)")


def logged_rates(profile: str) -> tuple[list[float], list[float]]:
    """Prompt and generation tokens/s of every request, in order, from the model's log."""
    (log,) = (paths.state_dir() / "logs").glob(f"{profile}-*.log")
    prompt: list[float] = []
    generation: list[float] = []
    for kind, rate in TIMING.findall(log.read_text(errors="replace")):
        (prompt if kind == "prompt eval" else generation).append(float(rate))
    return prompt, generation


def test_speed_figures_are_the_timings_llama_server_gave_those_requests(make_herd) -> None:
    config = make_herd()
    (target,) = herd_targets(config, ["dense"], every=False)
    settings = speed.SpeedSettings(prompt_lengths=(64,), gen_tokens=16, reps=2, concurrency=())
    run = speed.run(target, settings, Store(), environment=lambda: prepare(config, target))
    (measured,) = run.results["prompt"]
    generation = run.results["generation"]
    assert run.results["source"] == "server"

    prompt_rates, gen_rates = logged_rates("dense")
    # The requests in order: two warm-ups (1 token each), the 2 prompt-length ones (1
    # token each), the 2 generation ones (16 tokens each).
    assert len(prompt_rates) == len(gen_rates) == 6
    # The log prints two decimals.
    assert measured["tps"]["samples"] == pytest.approx(prompt_rates[2:4], abs=0.01)
    assert generation["tps"]["samples"] == pytest.approx(gen_rates[4:6], abs=0.01)


@pytest.fixture(scope="session")
def llama_bench(llama_server: Path) -> Path:
    """llama-bench from herd's own build (`herd build` builds it beside llama-server)."""
    binary = build.pinned_build_dir() / "bin" / "llama-bench"
    if not binary.exists():
        message = f"no llama-bench at {binary}: run `make llama-server` (herd build)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must never skip the comparison silently
        pytest.skip(message)
    return binary


def test_speed_vs_llama_bench_runs_on_smollm2_and_prints_its_table(
    real_models: dict[str, Path], llama_bench: Path
) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--prompt", "64", "--gen", "16"],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "bench" in line and "herd" in line)
    assert "direct" in header
    for test in ("pp64", "tg16"):
        (row,) = [line for line in result.stdout.splitlines() if test in line]
        rates = [float(x) for x in re.findall(r"(\d+\.\d) \(", row)]
        ratios = [float(x) for x in re.findall(r"\b(\d+\.\d\d)\b", row)]
        assert len(rates) == 3 and all(rate > 0 for rate in rates), row  # every column ran
        assert len(ratios) == 2 and all(ratio > 0 for ratio in ratios), row
    assert "Threads: llama-bench" in result.stdout

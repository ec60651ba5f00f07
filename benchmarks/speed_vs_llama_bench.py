"""`herd bench speed` beside llama-bench, on SmolLM2-135M and the llama.cpp herd built.

Run it from the project root:

    .venv/bin/python benchmarks/speed_vs_llama_bench.py [--rounds R] [--prompt N]
        [--gen N] [--threads T] [--json]

One run starts a private daemon (its own state dir, free ports) serving SmolLM2 with
herd's defaults (llama-server's 4 slots; no -t unless --threads), and measures in
interleaved rounds, the order turned each round so drift hits every column alike:

* llama-bench (built beside llama-server by `herd build`): pp N and tg N, one repetition
  a round after its own warm-up, the same threads;
* `herd bench speed` through the gateway (llamaherd.bench.speed.run, as the command runs
  it): one prompt of N tokens, one generation of N tokens; its figures are llama-server's
  own `timings` (tests/test_bench_speed_timings.py holds it to that);
* llama-server asked directly, no herd and no streaming: a prompt of exactly N tokens
  (token ids), then a generation of N tokens, one request at a time. What separates this
  column from llama-bench is llama-server's own per-token work; what separates it from
  herd's, the streaming and the gateway relaying it on the same cores.

It prints tokens/s side by side (median of the rounds, with their range) and the ratios
to llama-bench. It measures, never judges: see docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from gateway import PROFILE, Herd, machine, run_and_print, running_herd
from rich.console import Console
from rich.table import Table

from llamaherd import paths
from llamaherd.bench import speed
from llamaherd.bench.target import herd_targets, prepare
from llamaherd.errors import HerdError
from llamaherd.gguf import realmodels
from llamaherd.llamacpp import build
from llamaherd.store import Store

COLUMNS = ("llama-bench", "herd bench speed", "llama-server direct")
SHORT = {"llama-bench": "bench", "herd bench speed": "herd", "llama-server direct": "direct"}
STREAMS = 4  # llama-server's default slots: what a profile without `parallel` gets


def llama_bench_binary() -> Path:
    binary = build.pinned_build_dir() / "bin" / "llama-bench"
    if not binary.exists():
        raise HerdError(f"no llama-bench at {binary}: run `herd build` (it builds both)")
    return binary


def llama_bench(binary: Path, model: Path, prompt: int, gen: int, threads: int) -> dict:
    """One repetition of pp `prompt` and tg `gen`: tokens/s of each and the threads used."""
    argv = [str(binary), "-m", str(model), "-p", str(prompt), "-n", str(gen), "-r", "1"]
    argv += ["-o", "json"] + (["-t", str(threads)] if threads else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise HerdError(f"llama-bench failed ({done.returncode}): {done.stderr[-500:]}")
    tests = json.loads(done.stdout)
    pp = next(t for t in tests if t["n_prompt"] and not t["n_gen"])
    tg = next(t for t in tests if t["n_gen"] and not t["n_prompt"])
    return {"prompt": pp["avg_ts"], "generation": tg["avg_ts"], "threads": pp["n_threads"]}


def herd_speed(herd: Herd, prompt: int, gen: int) -> dict:
    """`herd bench speed --prompt-lengths N --gen-tokens N --reps 1 --concurrency ''`."""
    (target,) = herd_targets(herd.config, [PROFILE], every=False)
    settings = speed.SpeedSettings(prompt_lengths=(prompt,), gen_tokens=gen, reps=1, concurrency=())
    run = speed.run(target, settings, Store(), environment=lambda: prepare(herd.config, target))
    (measured,) = run.results["prompt"]
    return {
        "prompt": measured["tps"]["median"],
        "prompt_tokens": measured["tokens"],
        "generation": run.results["generation"]["tps"]["median"],
    }


def direct(client: httpx.Client, herd: Herd, prompt: int, gen: int, rng: random.Random) -> dict:
    """One prompt of exactly `prompt` tokens (1 generated), then `gen` tokens after a short
    prompt: llama-server's own timings of each, asked without herd or streaming."""
    words = " ".join(str(rng.randrange(1000)) for _ in range(prompt))
    tokens = post(client, herd, "/tokenize", {"content": words})["tokens"][:prompt]
    first = post(client, herd, "/completion", body(tokens, 1))
    short = post(client, herd, "/tokenize", {"content": words[:40]})["tokens"]
    second = post(client, herd, "/completion", {**body(short, gen), "ignore_eos": True})
    return {
        "prompt": first["timings"]["prompt_per_second"],
        "prompt_tokens": first["timings"]["prompt_n"],
        "generation": second["timings"]["predicted_per_second"],
    }


def body(tokens: list[int], n_predict: int) -> dict:
    return {"prompt": tokens, "n_predict": n_predict, "temperature": 0, "cache_prompt": False}


def post(client: httpx.Client, herd: Herd, path: str, payload: dict) -> dict:
    answer = client.post(herd.direct_url + path, json=payload)
    if answer.status_code != 200:
        raise HerdError(f"llama-server {path}: HTTP {answer.status_code}: {answer.text[:200]}")
    result: dict = answer.json()
    return result


def server_threads() -> int | None:
    """The threads herd's llama-server runs with, as its log says."""
    for log in (paths.state_dir() / "logs").glob(f"{PROFILE}-*.log"):
        found = re.search(r"n_threads = (\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
    return None


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()
    binary = llama_bench_binary()
    model = realmodels.fetch(realmodels.SMOLLM2)
    rng = random.Random(args.seed)
    samples: dict[str, list[dict]] = {column: [] for column in COLUMNS}
    ctx = max(4096, args.prompt + args.gen + 64)
    with (
        running_herd(STREAMS, args.threads, "smollm2", ctx=ctx) as herd,
        httpx.Client(timeout=600, headers=herd.direct_auth) as client,
    ):
        post(client, herd, "/completion", body([1, 2, 3], 4))  # warm-up of the direct side
        measure = {
            "llama-bench": lambda: llama_bench(binary, model, args.prompt, args.gen, args.threads),
            "herd bench speed": lambda: herd_speed(herd, args.prompt, args.gen),
            "llama-server direct": lambda: direct(client, herd, args.prompt, args.gen, rng),
        }
        for round_ in range(args.rounds):
            shift = round_ % len(COLUMNS)
            for column in COLUMNS[shift:] + COLUMNS[:shift]:
                samples[column].append(measure[column]())
                print(f"round {round_ + 1}/{args.rounds}: {column} done", file=sys.stderr)
        threads = {"llama-bench": samples["llama-bench"][0]["threads"], "llama-server": None}
        threads["llama-server"] = server_threads()
    figures: dict[str, Any] = {}
    for kind in ("prompt", "generation"):
        figures[kind] = {c: speed.spread([s[kind] for s in samples[c]]) for c in COLUMNS}
        bench = figures[kind]["llama-bench"]["median"]
        figures[kind]["ratio"] = {
            c: figures[kind][c]["median"] / bench for c in COLUMNS[1:] if bench
        }
    return {
        "model": realmodels.SMOLLM2.name,
        "prompt_tokens": args.prompt,
        "gen_tokens": args.gen,
        "rounds": args.rounds,
        "threads": threads,
        "slots": STREAMS,
        "figures": figures,
        "samples": samples,
        "machine": machine(load_before),
    }


def print_report(report: dict, console: Console) -> None:
    threads = report["threads"]
    table = Table(
        title=f"{report['model']}, tokens/s: median of {report['rounds']} interleaved "
        "rounds (min–max)"
    )
    table.add_column("test")
    for column in COLUMNS:
        table.add_column(SHORT[column], justify="right")
    for column in COLUMNS[1:]:
        table.add_column(f"{SHORT[column]}/bench", justify="right")
    tests = {"prompt": f"pp{report['prompt_tokens']}", "generation": f"tg{report['gen_tokens']}"}
    for kind, test in tests.items():
        row = report["figures"][kind]
        cells = [
            f"{row[c]['median']:.1f} ({row[c]['min']:.0f}–{row[c]['max']:.0f})" for c in COLUMNS
        ]
        ratios = [f"{row['ratio'].get(c, float('nan')):.2f}" for c in COLUMNS[1:]]
        table.add_row(test, *cells, *ratios)
    console.print(table)
    load = report["machine"]
    console.print(
        f"bench: llama-bench; herd: `herd bench speed` through the gateway; direct: "
        f"llama-server without herd, one request, not streamed. Threads: llama-bench "
        f"{threads['llama-bench']}, llama-server {threads['llama-server']}; "
        f"{report['slots']} slots. {load['cpus']} CPUs, load average "
        f"{load['load_avg_before'][0]} before, {load['load_avg_after'][0]} after."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens, pp (512)")
    parser.add_argument("--gen", type=int, default=128, help="generated tokens, tg (128)")
    parser.add_argument(
        "--threads", type=int, default=0, help="-t for both (0: each tool's default)"
    )
    parser.add_argument("--seed", type=int, default=None, help="for the direct prompts")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_print(lambda: run(args), print_report, args.json)


if __name__ == "__main__":
    sys.exit(main())

"""How much a kept prompt cache saves after a swap back (issue 18, docs/kv-keep.md).

Run it from the project root:

    .venv/bin/python benchmarks/kv_keep.py [--words N] [--restore start|lazy] [--json]

One run starts a private daemon (its own state dir, free loopback ports, max_loaded = 1)
with the demo models: `keep` and `drop`, the dense demo model twice (one with
`kv_keep = false`), and `other` (the MoE demo model). For each of keep and drop:

1. A: a long prompt (a shared prefix, ~8k tokens by default) then a question;
2. B: `other` answers a short request, which swaps A out (keep saves its cache here);
3. A again: the same prefix with another question, the swap back included in the time.

It prints the time to first token of step 3 for both, side by side, how many prompt
tokens llama-server processed (its `timings.prompt_n`), and the bytes herd wrote. The
issue's target (a 5x cut on an 8k-token prefix) is reported, never enforced. With
`--restore lazy` (`kv_restore = "lazy"`), keep's start restores nothing and step 3's
request has its saved prefix restored first, when herd finds that its prompt matches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from gateway import MODELS, binary_and_models, private_dirs, run_and_print, stop_daemon
from rich.console import Console
from rich.table import Table

from llamaherd import control, demo
from llamaherd.client import DaemonClient
from llamaherd.config import Config, load_config
from llamaherd.errors import HerdError
from llamaherd.runtime import process

TARGET_CUT = 5.0


def write_config(
    directory: Path, ctx: int, model: str = "generated", restore: str = "start"
) -> Config:
    binary, models = binary_and_models(directory, model)
    demo.write_moe_model(models / "moe.gguf")
    path = directory / "herd.toml"
    long = f'file = "dense.gguf"\nctx = {ctx}\nparallel = 1\n'
    path.write_text(
        f'models_dir = "{models}"\nllama_server = "{binary}"\n\n[server]\n'
        f"port = {process.free_port()}\napi_port = {process.free_port()}\n"
        "start_timeout = 120\nstop_timeout = 10\nmax_loaded = 1\n"
        f'kv_restore = "{restore}"\n'
        f"\n[models.keep]\n{long}"
        f"\n[models.drop]\n{long}kv_keep = false\n"
        '\n[models.other]\nfile = "moe.gguf"\nctx = 2048\n'
    )
    return load_config(path)


def first_token(config: Config, model: str, prompt: str) -> tuple[float, dict]:
    """Seconds from sending a streamed completion to its first token; its timings."""
    request = {
        "model": model,
        "prompt": prompt,
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "timings_per_token": True,
    }
    url = f"{config.server.public_url}/v1/completions"
    began = time.perf_counter()
    ttft: float | None = None
    timings: dict = {}
    with httpx.stream("POST", url, json=request, timeout=600) as answer:
        if answer.status_code != 200:
            raise HerdError(f"{model} answered {answer.status_code}: {answer.read().decode()}")
        for line in answer.iter_lines():
            if not line.startswith("data: {"):
                continue
            if ttft is None:
                ttft = time.perf_counter() - began
            timings = json.loads(line[6:]).get("timings") or timings
    if ttft is None:
        raise HerdError(f"{model} streamed no token")
    return ttft, timings


def swap_back(config: Config, model: str, prefix: str) -> dict:
    """A (long prompt), B (swaps A out), A again: the figures of the last request."""
    control.up(config, model)
    first_s, first = first_token(config, model, prefix + "\nQuestion: what is w1?")
    first_token(config, "other", "hello")  # the swap: A is stopped (and saved, if kept)
    again_s, again = first_token(config, model, prefix + "\nQuestion: what is w2?")
    saved = DaemonClient(config.server.api_url).status().kv_cache.get(model)
    return {
        "prefix_tokens": first.get("prompt_n"),
        "first_ttft_s": round(first_s, 3),
        "ttft_after_swap_back_s": round(again_s, 3),
        "prompt_n_after_swap_back": again.get("prompt_n"),
        "bytes_written": sum(f.bytes for f in saved.saved) if saved else 0,
        "restored_tokens": saved.last_restore.tokens if saved and saved.last_restore else 0,
    }


def run(args: argparse.Namespace) -> dict:
    prefix = " ".join(f"w{i}" for i in range(args.words))
    with private_dirs("herd-kv-") as base:
        config = write_config(base, args.ctx, args.model, args.restore)
        try:
            report: dict[str, Any] = {"keep": swap_back(config, "keep", prefix)}
            report["drop"] = swap_back(config, "drop", prefix)
        finally:
            stop_daemon(DaemonClient(config.server.api_url))
    keep, drop = report["keep"]["ttft_after_swap_back_s"], report["drop"]["ttft_after_swap_back_s"]
    report["cut"] = round(drop / keep, 1) if keep else None
    report["model"] = args.model
    report["restore"] = args.restore
    report["target_cut"] = TARGET_CUT
    return report


def print_report(report: dict, console: Console) -> None:
    table = Table("after A → B → A", "cache kept", "cache dropped")
    keep, drop = report["keep"], report["drop"]
    rows = [
        ("prefix tokens (first request)", "prefix_tokens"),
        ("first request, time to first token (s)", "first_ttft_s"),
        ("swap back + request, time to first token (s)", "ttft_after_swap_back_s"),
        ("prompt tokens processed after the swap back", "prompt_n_after_swap_back"),
        ("tokens restored (at the start, or lazily)", "restored_tokens"),
        ("bytes written to the state dir", "bytes_written"),
    ]
    for label, key in rows:
        table.add_row(label, str(keep[key]), str(drop[key]))
    console.print(f"A is the {report['model']} model; kv_restore = {report['restore']}")
    console.print(table)
    verdict = "met" if (report["cut"] or 0) >= TARGET_CUT else "NOT met"
    console.print(f"time to first token cut {report['cut']}x (target {TARGET_CUT:g}x: {verdict})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--words", type=int, default=1900, help="prefix words (~4.3 tokens each: ~8k tokens)"
    )
    parser.add_argument("--ctx", type=int, default=16384, help="the long profiles' context")
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="generated",
        help="A's model: the generated tiny dense one, or SmolLM2-135M (fetched once)",
    )
    parser.add_argument(
        "--restore",
        choices=("start", "lazy"),
        default="start",
        help="kv_restore: at the start, or lazily by the request whose prompt matches",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_print(lambda: run(args), print_report, args.json)


if __name__ == "__main__":
    sys.exit(main())

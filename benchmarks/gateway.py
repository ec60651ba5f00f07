"""What the gateway costs: the same llama-server, asked directly and through herd's gateway.

Run it from the project root:

    .venv/bin/python benchmarks/gateway.py [--requests N] [--rounds R] [--threads T] [--json]

One run starts a private daemon (its own state dir, free ports, a generated tiny dense
model, the llama-server herd built) and measures, against that one llama-server:

* latency of a 1-token completion, direct vs gateway, interleaved request by request so
  that drift (CPU frequency, another process waking up, llama-server's cache state) hits
  both sides equally; one keep-alive client per side, so connection setup is not timed;
* a cheap GET /health, direct vs gateway: no model work at all, so the difference is the
  gateway's own cost with little llama-server noise on top;
* streaming throughput of 8 concurrent streams, direct vs gateway, in alternating rounds,
  with the median round taken for each side;
* the daemon's CPU time per gateway request and per relayed token, which says what the
  gateway costs independently of how busy the machine happens to be.

The issue's targets (p50 added latency under 1 ms, streaming ratio at least 0.97) are
reported, never enforced: the script measures, the tests check correctness. See
docs/performance.md for figures and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llamaherd import control, demo
from llamaherd.bench.speed import percentile
from llamaherd.client import DaemonClient
from llamaherd.config import Config, load_config
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError
from llamaherd.gguf import realmodels
from llamaherd.llamacpp import build
from llamaherd.runtime import SERVER_KEY_ENV, auth_headers, process

PROFILE = "dense"
MODELS = {
    "generated": "generated tiny dense (llamaherd.demo.write_dense_model)",
    "smollm2": "SmolLM2-135M-Instruct Q4_1 (gguf/realmodels.py)",
}
PROMPT = "Hello world"
TARGET_ADDED_P50_MS = 1.0
TARGET_STREAM_RATIO = 0.97

# Both sides get the very same body: the gateway reads `model` to pick the profile (the
# running one, so no switch), llama-server accepts its own --alias.
ONE_TOKEN = {
    "model": PROFILE,
    "prompt": PROMPT,
    "max_tokens": 1,
    "temperature": 0,
    "cache_prompt": True,
}


@dataclass
class Herd:
    """A running private daemon: where to reach llama-server directly and through herd."""

    config: Config
    direct_url: str
    gateway_url: str
    daemon_pid: int
    llama_server: Path
    # llama-server's port wants the key herd started it with (its environment; the
    # gateway adds it itself): the direct side sends it too, so both do the same work.
    direct_auth: dict[str, str] = field(default_factory=dict)


@dataclass
class Latency:
    """Timings of one kind of request (milliseconds), direct and through the gateway."""

    direct: list[float] = field(default_factory=list)
    gateway: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # The daemon's CPU time per direct+gateway pair: the gateway's work, plus reading the
    # log lines llama-server prints for both requests (about 0.3-0.7 ms a completion here).
    daemon_cpu_ms: float = 0.0

    def summary(self) -> dict:
        d50, d99 = percentile(self.direct, 50), percentile(self.direct, 99)
        g50, g99 = percentile(self.gateway, 50), percentile(self.gateway, 99)
        return {
            "samples": len(self.direct),
            "direct": {"p50_ms": d50, "p99_ms": d99, "mean_ms": statistics.fmean(self.direct)},
            "gateway": {"p50_ms": g50, "p99_ms": g99, "mean_ms": statistics.fmean(self.gateway)},
            "added_p50_ms": g50 - d50,
            "added_p99_ms": g99 - d99,
            "ratio_p50": g50 / d50,
            "ratio_p99": g99 / d99,
            "daemon_cpu_ms_per_request": self.daemon_cpu_ms,
            "errors": self.errors,
        }


@dataclass
class Throughput:
    """Tokens/s of each round (all streams together), direct and through the gateway."""

    direct: list[float] = field(default_factory=list)
    gateway: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gateway_tokens: int = 0  # tokens relayed in the timed gateway rounds ...
    gateway_cpu_s: float = 0.0  # ... and the daemon's CPU time meanwhile

    def summary(self, streams: int, tokens: int) -> dict:
        if not self.direct or not self.gateway:
            raise HerdError(f"every streaming round failed on one side: {self.errors[:3]}")
        direct, gateway = statistics.median(self.direct), statistics.median(self.gateway)
        return {
            "streams": streams,
            "max_tokens": tokens,
            "rounds": len(self.direct),
            "direct_tok_s": direct,
            "gateway_tok_s": gateway,
            "direct_rounds": self.direct,
            "gateway_rounds": self.gateway,
            "ratio": gateway / direct,
            "daemon_cpu_us_per_token": self.gateway_cpu_s * 1e6 / max(self.gateway_tokens, 1),
            # What one fully busy daemon core could relay at that cost: the gateway's ceiling.
            "relay_ceiling_tok_s_per_core": self.gateway_tokens / max(self.gateway_cpu_s, 1e-9),
            "errors": self.errors,
        }


# --- the daemon ------------------------------------------------------------------------


def write_config(
    directory: Path, *, streams: int, threads: int, model: str, ctx: int | None = None
) -> Config:
    """A herd.toml with one dense profile on free ports, parallel enough for all streams
    (and a context of 512 tokens each, unless `ctx` says otherwise).

    `parallel` = number of streams, so llama-server decodes them together instead of
    queueing some: otherwise the measurement would be of llama-server's queue. `threads`
    (0: llama-server's default, all cores) is llama-server's compute threads: ggml's
    threads spin while they wait for each other, so on a small machine they fight the
    client and the daemon for the cores and the figures swing by 2x between rounds.
    """
    binary, models = binary_and_models(directory, model)
    path = directory / "herd.toml"
    path.write_text(
        f'models_dir = "{models}"\n'
        f'llama_server = "{binary}"\n'
        "\n[server]\n"
        f"port = {process.free_port()}\n"
        f"api_port = {process.free_port()}\n"
        "start_timeout = 60\n"
        "stop_timeout = 5\n"
        f"\n[models.{PROFILE}]\n"
        'file = "dense.gguf"\n'
        f"ctx = {ctx or 512 * streams}\n"
        f"parallel = {streams}\n" + (f"threads = {threads}\n" if threads else "")
    )
    return load_config(path)


def binary_and_models(directory: Path, model: str) -> tuple[Path, Path]:
    """The llama-server herd builds, and DIR/models holding dense.gguf: the generated tiny
    model, or SmolLM2-135M (`model` "smollm2", fetched once into herd's cache)."""
    binary = build.pinned_build_dir() / "bin" / "llama-server"
    if not binary.exists():
        raise HerdError(f"no llama-server at {binary}: run `herd build` (make llama-server)")
    models = directory / "models"
    models.mkdir()
    if model == "smollm2":
        (models / "dense.gguf").symlink_to(realmodels.fetch(realmodels.SMOLLM2))
    else:
        demo.write_dense_model(models / "dense.gguf")
    return binary, models


@contextlib.contextmanager
def running_herd(
    streams: int, threads: int = 1, model: str = "generated", ctx: int | None = None
) -> Iterator[Herd]:
    """Start a private daemon with the dense model running; always shut it down after.

    The state dir is a fresh temp dir (HERD_STATE_DIR), and HERD_URL/HERD_API_KEY are
    cleared, so the benchmark never touches a daemon the user runs.
    """
    with private_dirs("herd-bench-") as base:
        config = write_config(base, streams=streams, threads=threads, model=model, ctx=ctx)
        client = DaemonClient(config.server.api_url)
        try:
            answer = control.up(config, PROFILE)
            if not answer.ok:
                raise HerdError(f"{PROFILE} did not start: {getattr(answer, 'error', '')}")
            status = client.status()
            yield Herd(
                config=config,
                direct_url=status.url or "",
                gateway_url=status.daemon.url,
                daemon_pid=status.daemon.pid,
                llama_server=Path(status.daemon.llama_server or ""),
                direct_auth=auth_headers(psutil.Process(status.pid).environ().get(SERVER_KEY_ENV)),
            )
        finally:
            stop_daemon(client)


@contextlib.contextmanager
def private_dirs(prefix: str) -> Iterator[Path]:
    """A temp dir whose state/ and config/ herd uses from now on (HERD_STATE_DIR and
    HERD_CONFIG_DIR, which a daemon started here inherits); HERD_URL, HERD_CONFIG and
    HERD_API_KEY cleared, so a benchmark never touches a daemon the user runs."""
    with tempfile.TemporaryDirectory(prefix=prefix) as temp:
        base = Path(temp)
        os.environ["HERD_STATE_DIR"] = str(base / "state")
        os.environ["HERD_CONFIG_DIR"] = str(base / "config")
        for name in ("HERD_CONFIG", "HERD_URL", "HERD_API_KEY"):
            os.environ.pop(name, None)
        yield base


def stop_daemon(client: DaemonClient) -> None:
    """control.down; if the daemon does not go, kill the one our private state dir records."""
    try:
        control.down(client, stop_daemon=True)
    except HerdError as error:
        record = running_record()
        if record:
            print(f"daemon did not stop cleanly ({error}); killing it", file=sys.stderr)
            with contextlib.suppress(OSError):
                os.kill(record["pid"], signal.SIGKILL)


def daemon_cpu(pid: int) -> float:
    """CPU seconds (user + system) the daemon has used so far; /proc's 10 ms ticks, so
    only differences over many requests are meaningful."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def daemon_footprint(pid: int) -> dict:
    """The daemon's memory, open files and sockets: growth between two calls hints at leaks."""
    process = psutil.Process(pid)
    connections = getattr(process, "net_connections", None) or process.connections  # psutil<6
    return {
        "rss_mb": round(process.memory_info().rss / 2**20, 1),
        "fds": process.num_fds(),
        "tcp_connections": len(connections(kind="tcp")),
    }


# --- latency ---------------------------------------------------------------------------


def measure_latency(
    herd: Herd,
    method: str,
    path: str,
    body: dict | None,
    requests: int,
    warmup: int,
    advance: Callable[[], None],
) -> Latency:
    """One kind of request, alternating direct/gateway request by request.

    The order flips every iteration (direct first, then gateway first) so neither side
    always runs right after the other's work. The daemon's CPU time over the timed part,
    divided by the pairs, is what a gateway request costs the daemon, plus a little for the
    direct one: the daemon reads the log lines llama-server prints for every request.
    """
    result = Latency()
    with (
        httpx.Client(timeout=30, headers=herd.direct_auth) as direct,
        httpx.Client(timeout=30) as gateway,
    ):
        sides = {"direct": (direct, herd.direct_url), "gateway": (gateway, herd.gateway_url)}
        for i in range(warmup + requests):
            if i == warmup:  # the warm-up requests are not counted
                result = Latency()
                cpu_before = daemon_cpu(herd.daemon_pid)
            for side in ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct"):
                client, base = sides[side]
                start = time.perf_counter()
                response = client.request(method, base + path, json=body)
                response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code != 200:
                    result.errors.append(f"{side} {path}: HTTP {response.status_code}")
                getattr(result, side).append(elapsed)
            if i >= warmup:
                advance()
    result.daemon_cpu_ms = (daemon_cpu(herd.daemon_pid) - cpu_before) * 1000 / requests
    return result


# --- streaming -------------------------------------------------------------------------


async def one_stream(client: httpx.AsyncClient, url: str, max_tokens: int) -> int:
    """One streamed completion; returns the tokens received (one SSE event per token).

    Every event is counted but only the last one is parsed (it carries llama-server's
    timings), so the client does little work per chunk: on a small machine it shares the
    cores with the daemon and llama-server, and must not become what is measured.
    """
    body = {
        "model": PROFILE,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": True,
        "stream": True,
    }
    events, last = 0, ""
    async with client.stream("POST", url + "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise HerdError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events += 1
                last = line
    predicted = json.loads(last[6:]).get("timings", {}).get("predicted_n") if last else None
    if predicted is not None and predicted != max_tokens:
        raise HerdError(f"llama-server generated {predicted} tokens, not {max_tokens}")
    return max_tokens if predicted is not None else events


async def stream_round(
    client: httpx.AsyncClient, url: str, streams: int, tokens: int
) -> tuple[int, float]:
    """`streams` concurrent streams: all tokens received, and the round's wall time.

    Tokens/s is their quotient: what the clients together got, the sum over the streams.
    """
    start = time.perf_counter()
    received = await asyncio.gather(*(one_stream(client, url, tokens) for _ in range(streams)))
    return sum(received), time.perf_counter() - start


async def measure_streaming(
    herd: Herd, streams: int, tokens: int, rounds: int, advance: Callable[[], None]
) -> Throughput:
    """Alternating rounds (one warm-up each), direct and gateway, order flipped each round."""
    result = Throughput()
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits, headers=herd.direct_auth) as direct,
        httpx.AsyncClient(timeout=120, limits=limits) as gateway,
    ):
        sides = {"direct": (direct, herd.direct_url), "gateway": (gateway, herd.gateway_url)}
        for i in range(rounds + 1):
            order = ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct")
            for side in order:
                client, url = sides[side]
                cpu_before = daemon_cpu(herd.daemon_pid)
                try:
                    received, seconds = await stream_round(client, url, streams, tokens)
                except (HerdError, httpx.HTTPError) as error:
                    result.errors.append(f"{side}: {error!r}")
                    continue
                if i == 0:
                    continue  # round 0 warms both sides up
                getattr(result, side).append(received / seconds)
                if side == "gateway":
                    result.gateway_tokens += received
                    result.gateway_cpu_s += daemon_cpu(herd.daemon_pid) - cpu_before
            if i > 0:
                advance()
    return result


# --- report ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    """Start the daemon, measure everything against its llama-server, return the figures."""
    load_before = os.getloadavg()
    progress = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(progress)
        starting = progress.add_task("starting the daemon", total=None)
        herd = stack.enter_context(running_herd(args.streams, args.threads, args.model))
        progress.update(starting, total=1, completed=1)
        props = httpx.get(herd.direct_url + "/props", headers=herd.direct_auth, timeout=10).json()
        footprint_before = daemon_footprint(herd.daemon_pid)
        completion_task = progress.add_task("1-token completions", total=args.requests)
        completion = measure_latency(
            herd,
            "POST",
            "/v1/completions",
            ONE_TOKEN,
            args.requests,
            args.warmup,
            lambda: progress.advance(completion_task),
        )
        health_task = progress.add_task("GET /health", total=args.requests)
        health = measure_latency(
            herd,
            "GET",
            "/health",
            None,
            args.requests,
            args.warmup,
            lambda: progress.advance(health_task),
        )
        stream_task = progress.add_task(f"{args.streams} streams", total=args.rounds)
        throughput = asyncio.run(
            measure_streaming(
                herd,
                args.streams,
                args.tokens,
                args.rounds,
                lambda: progress.advance(stream_task),
            )
        )
        footprint_after = daemon_footprint(herd.daemon_pid)
    completion_summary = completion.summary()
    stream_summary = throughput.summary(args.streams, args.tokens)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "llama_server": {
            "binary": str(herd.llama_server),
            "build": props.get("build_info"),
            "threads": args.threads or "default",
            "parallel": args.streams,
        },
        "model": MODELS[args.model],
        "latency_1_token": completion_summary,
        "latency_health": health.summary(),
        "streaming": stream_summary,
        "daemon": {"before": footprint_before, "after": footprint_after},
        "targets": {
            "added_p50_ms_under": TARGET_ADDED_P50_MS,
            "added_p50_met": completion_summary["added_p50_ms"] < TARGET_ADDED_P50_MS,
            "stream_ratio_at_least": TARGET_STREAM_RATIO,
            "stream_ratio_met": stream_summary["ratio"] >= TARGET_STREAM_RATIO,
        },
    }


def print_report(report: dict, console: Console) -> None:
    """The figures as two small tables, then the targets."""
    machine = report["machine"]
    console.print(
        f"[bold]herd gateway benchmark[/] {report['date']}  {machine['cpus']} CPUs, "
        f"load {machine['load_avg_before'][0]:.2f} → {machine['load_avg_after'][0]:.2f}"
    )
    server = report["llama_server"]
    console.print(
        f"llama-server {server['build']}, {server['threads']} thread(s), "
        f"{server['parallel']} slots; {report['model']}"
    )
    samples = report["latency_1_token"]["samples"]
    latency = Table(
        title=f"Latency (ms), {samples} requests per side, interleaved",
        title_justify="left",
        caption="daemon CPU: ms the daemon spent per direct+gateway pair",
        caption_justify="left",
    )
    for column in ("request", "", "direct", "gateway", "added", "ratio"):
        latency.add_column(column, justify="left" if column in ("request", "") else "right")
    for name, key in (("1-token completion", "latency_1_token"), ("GET /health", "latency_health")):
        s = report[key]
        for pct in ("p50", "p99"):
            latency.add_row(
                name if pct == "p50" else "",
                pct,
                f"{s['direct'][pct + '_ms']:.2f}",
                f"{s['gateway'][pct + '_ms']:.2f}",
                f"{s['added_' + pct + '_ms']:+.2f}",
                f"{s['ratio_' + pct]:.2f}",
            )
        latency.add_row("", "daemon CPU", "", f"{s['daemon_cpu_ms_per_request']:.2f}")
    console.print(latency)
    s = report["streaming"]
    streaming = Table(
        title=f"Streaming: {s['streams']} concurrent × {s['max_tokens']} tokens, "
        f"median of {s['rounds']} rounds",
        title_justify="left",
        caption="ceiling: tok/s one fully busy daemon core could relay at that cost",
        caption_justify="left",
    )
    columns = ("direct tok/s", "gateway tok/s", "gateway/direct", "daemon µs/token", "ceiling")
    for column in columns:
        streaming.add_column(column, justify="right")
    streaming.add_row(
        f"{s['direct_tok_s']:.0f}",
        f"{s['gateway_tok_s']:.0f}",
        f"{s['ratio']:.3f}",
        f"{s['daemon_cpu_us_per_token']:.0f}",
        f"{s['relay_ceiling_tok_s_per_core']:.0f}",
    )
    console.print(streaming)
    targets, footprint = report["targets"], report["daemon"]
    before, after = footprint["before"], footprint["after"]
    latency_s = report["latency_1_token"]

    def verdict(met: bool) -> str:
        return "[green]met[/]" if met else "[red]missed[/]"

    console.print(
        f"target p50 added latency < {targets['added_p50_ms_under']:g} ms: "
        f"{latency_s['added_p50_ms']:.2f} ms, {verdict(targets['added_p50_met'])}"
    )
    console.print(
        f"target streaming ratio ≥ {targets['stream_ratio_at_least']:g}: "
        f"{s['ratio']:.3f}, {verdict(targets['stream_ratio_met'])}"
    )
    console.print(
        f"daemon: rss {before['rss_mb']} → {after['rss_mb']} MB, fds {before['fds']} → "
        f"{after['fds']}, tcp {before['tcp_connections']} → {after['tcp_connections']}"
    )
    errors = latency_s["errors"] + report["latency_health"]["errors"] + s["errors"]
    if errors:
        console.print(f"[red]{len(errors)} failed request(s)[/]: {errors[:5]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=500, help="timed 1-token requests per side (500)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per side (20)")
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams (8)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream (128)")
    parser.add_argument(
        "--threads", type=int, default=1, help="llama-server threads, 0: its default (1)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per side (10)")
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="generated", help="the model served (generated)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if args.requests < 2 or min(args.rounds, args.streams, args.warmup) < 1 or args.threads < 0:
        parser.error("--requests must be at least 2, --rounds/--streams/--warmup at least 1")
    return args


def machine(load_before: tuple[float, float, float]) -> dict:
    """What a report records of the machine: cores, platform, and the load average before
    and now (other work on the machine moves every figure)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def run_and_print(
    measure: Callable[[], dict], print_report: Callable[[dict, Console], None], as_json: bool
) -> int:
    """Run a benchmark against its private daemon and print its report: main() of each
    script here. The exit code says whether it ran, never whether a target was met."""
    # The daemon runs detached and would outlive us: turn SIGTERM into an exception, like
    # Ctrl-C, so running_herd's cleanup shuts it down either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = measure()
    except HerdError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the daemon was shut down", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, Console())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_print(lambda: run(args), print_report, args.json)


if __name__ == "__main__":
    sys.exit(main())

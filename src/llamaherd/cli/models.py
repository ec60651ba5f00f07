"""GGUF models: inspect a file, plan its placement, add it to herd.toml."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from llamaherd.cli.options import config_of, emit_json, optional_config
from llamaherd.cli.render import admission_lines, console, err_console, print_lines
from llamaherd.config.toml import toml_value
from llamaherd.errors import HerdError, UsageError

if TYPE_CHECKING:
    from llamaherd.gguf.plan import Settings
    from llamaherd.schema import Admission

Decorated = TypeVar("Decorated", bound=Callable[..., Any])


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_command(file: Path, as_json: bool) -> None:
    """Show what a GGUF file holds (header only; split files: any part)."""
    from llamaherd.gguf import header as gguf_header
    from llamaherd.gguf import render

    info = gguf_header.read(file)
    emit_json(info.summary()) if as_json else render.print_inspect(console, info)


def _plan_options(command: Decorated) -> Decorated:
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


@click.command("plan")
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
@click.option(
    "--beside-running",
    is_flag=True,
    help="Ask the daemon: does it fit next to the models running now, what would be evicted?",
)
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
    beside_running: bool,
    as_json: bool,
) -> None:
    """Memory per device for FILE, and the best placement for the GPUs given.

    Prints the llama-server flags and the herd.toml `placement` table."""
    from llamaherd.gguf import header as gguf_header
    from llamaherd.gguf import plan as gguf_plan
    from llamaherd.gguf import render
    from llamaherd.gguf import search as gguf_search

    info = gguf_header.read(file)
    settings = gguf_plan.Settings(
        ctx=ctx_size or info.context_length or 4096,
        parallel=parallel,
        cache_type_k=kv_type or "f16",
        cache_type_v=kv_type or "f16",
        flash_attn=flash_attn,
        margin=margin * gguf_plan.MiB,
    )
    gpus = gguf_plan.parse_gpus(gpu_sizes)
    result = gguf_search.best_plan(
        info, settings, gguf_plan.detected_gpus() if gpus is None else gpus
    )
    result.notes += gguf_search.ram_notes(result.estimate)
    checked = _fit_check(ctx, info.path, result.flags()) if check else None
    beside = _beside_running(ctx, file, settings) if beside_running else None
    if as_json:
        summary = {**result.summary(), "llama_cpp": checked}
        emit_json(summary | ({"beside_running": beside.model_dump()} if beside else {}))
        sys.exit(1 if beside and beside.refused else 0)
    if beside:
        print_lines(admission_lines(beside))
        sys.exit(1 if beside.refused else 0)
    render.print_plan(console, result, info)
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


def _beside_running(ctx: click.Context, file: Path, settings: Settings) -> Admission:
    from llamaherd import control
    from llamaherd.schema import AdmissionQuery

    query = AdmissionQuery(
        file=str(file.resolve()),
        ctx=settings.ctx,
        parallel=settings.parallel,
        cache_type_k=settings.cache_type_k,
        cache_type_v=settings.cache_type_v,
        flash_attn=settings.flash_attn,
    )
    return control.connect(optional_config(ctx)).admission(query)


def _fit_check(ctx: click.Context, model: Path, flags: list[str]) -> dict:
    from llamaherd.gguf import check
    from llamaherd.llamacpp import binaries

    try:
        configured = config_of(ctx).llama_server
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


@click.command("add")
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
        emit_json(added.summary())
    else:
        verb = "replaced" if added.replaced else "added"
        console.print(f"{verb} [models.{added.profile_id}] in {added.config_path}")
        for key, value in added.table.items():
            console.print(f"  {key} = {toml_value(value)}")
        console.print(f"  plan {added.plan.strategy}: {added.plan.reason}")
        console.print(f"  sampling: {added.sampling_source}")
        for warning in added.warnings:
            err_console.print(f"  warning: {warning}")
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
        from llamaherd.cli.bench import bench_speed

        ctx.invoke(bench_speed, ids=(added.profile_id,), as_json=as_json)

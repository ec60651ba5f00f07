"""Provisioning: build (and update) llama.cpp, doctor, an RPC worker, docker compose."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.text import Text

from llamaherd.cli.options import config_of, emit_json, optional_config
from llamaherd.cli.progress import BuildProgress
from llamaherd.cli.render import console, print_lines
from llamaherd.errors import UsageError
from llamaherd.llamacpp import build, cmake
from llamaherd.runtime import rpc


@click.command("build")
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build from this llama.cpp checkout instead of the pinned release (no download).",
)
@click.option(
    "--backend",
    type=click.Choice(list(cmake.BACKEND_FLAGS)),
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
        from llamaherd.llamacpp import image

        built, argv = image.build_image(source, backend, cuda_arch=cuda_arch, tag=tag)
        if as_json:
            emit_json({"image": built, "argv": argv})
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
    with BuildProgress(enabled=not as_json) as progress:
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
        emit_json(build.describe(result))
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
    from llamaherd.llamacpp import update as updater  # it runs doctor's checks on the new build

    with BuildProgress(enabled=not as_json) as progress:
        done = updater.update(
            backend,
            jobs=jobs,
            progress=progress,
            cuda_arch=cuda_arch,
            targets=targets or build.TARGETS,
        )
    if as_json:
        result = build.describe(done.result) if done.result else None
        emit_json({"old": done.old, "new": done.new, "build": result, "removed": done.removed})
    elif done.result is None:
        console.print(f"llama.cpp {done.old} is the newest release; nothing to update")
    else:
        console.print(
            f"updated llama.cpp {done.old} -> {done.new} ({backend}): {done.result.bin_dir}"
        )
        if done.removed:
            console.print(f"removed the old build {done.removed}")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check the llama-server, GPUs, ports and config herd would use."""
    from llamaherd import doctor

    result = doctor.report(ctx.obj["config"])
    if as_json:
        emit_json(result)
    else:
        print_lines(_doctor_lines(result))
    if not doctor.healthy(result):
        sys.exit(1)


def _doctor_lines(result: dict) -> list[Text | str]:
    """`herd doctor`'s report: one `ok`/`FAIL` line per check."""
    lines: list[Text | str] = []

    def line(ok: bool, section: str, text: str) -> None:
        lines.append(
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
            lines.append(f"{'':19}also: {other['path']} ({other['origin']})")
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
    _doctor_beyond(result, line)
    return lines


def _doctor_beyond(result: dict, line: Callable[[bool, str, str], None]) -> None:
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


@click.command()
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
    from llamaherd.llamacpp import binaries

    config = optional_config(ctx)
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


@click.command("compose")
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
    from llamaherd.config.checks import missing_model_file
    from llamaherd.runtime import compose

    config = config_of(ctx)
    profile = config.resolve(model)
    if missing := missing_model_file(config, profile):  # the container would mount nothing
        raise missing
    written = compose.write(config, profile, directory, port or config.server.port)
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    console.print(f"run      docker compose --project-directory {directory} up -d")

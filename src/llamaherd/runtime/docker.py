"""The docker runtime: a profile's llama-server in a container from herd's image.

`docker run` stays attached (no -d): its output is the container's log and it exits
when the container does, so process.ServerProcess handles it exactly like a native
llama-server (log capture, readiness on /health, crash detection). The container is
named after the profile: one left behind by a killed daemon is removed before the next
start, and a stop or switch runs `docker stop` and `docker rm`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from llamaherd.config import DockerSettings, Profile
from llamaherd.runtime import SERVER_KEY_ENV, new_server_key, process
from llamaherd.runtime.argv import SLOT_SAVE_FLAG, server_argv

CONTAINER_PORT = 8080  # llama-server's port inside the container; published on loopback
MODELS_MOUNT = "/models"
MODEL_MOUNT = "/model"  # the file's own folder, for a `file` outside models_dir


def docker_binary() -> str:
    return shutil.which("docker") or "docker"


def container_name(profile: Profile) -> str:
    return f"herd-{profile.id}"


def model_mount(profile: Profile, models_dir: Path) -> tuple[Path, str, str]:
    """(host folder, container folder, model path in the container) for a profile's file.

    The whole folder is mounted, read-only, so split GGUFs find their other parts."""
    try:
        relative = profile.file.relative_to(models_dir)
        return models_dir, MODELS_MOUNT, f"{MODELS_MOUNT}/{relative.as_posix()}"
    except ValueError:
        folder = profile.file.parent
        return folder, MODEL_MOUNT, f"{MODEL_MOUNT}/{profile.file.name}"


def slot_save_mount(profile: Profile) -> list[str]:
    """The `--slot-save-path` folder (herd's kept prompt caches, docs/kv-keep.md) mounted
    read-write at the same path, so the path in the flag means the same inside."""
    args = profile.args
    if SLOT_SAVE_FLAG not in args[:-1]:
        return []
    folder = args[args.index(SLOT_SAVE_FLAG) + 1].rstrip("/") or "/"
    return ["-v", f"{folder}:{folder}"]


def gpu_option(settings: DockerSettings, profile: Profile) -> list[str]:
    """`--gpus` for the container. The value is parsed as CSV by docker, so a device list
    needs its own quotes: --gpus '"device=0,1"'."""
    if not settings.gpus:
        return []
    if profile.gpus:
        return ["--gpus", '"device=' + ",".join(str(g) for g in profile.gpus) + '"']
    return ["--gpus", "all"]


def run_argv(
    settings: DockerSettings, models_dir: Path, profile: Profile, port: int, docker: str = "docker"
) -> list[str]:
    """The `docker run` command line that serves `profile` on 127.0.0.1:port."""
    host_dir, mount, model = model_mount(profile, models_dir)
    argv = [docker, "run", "--rm", "--name", container_name(profile)]
    argv += ["-p", f"127.0.0.1:{port}:{CONTAINER_PORT}", "-v", f"{host_dir}:{mount}:ro"]
    argv += slot_save_mount(profile)
    argv += gpu_option(settings, profile)
    # By name only: docker copies each value from its own environment (container_env),
    # so no value shows in `ps`, the log's first line or /status.
    for key in [*profile.env, SERVER_KEY_ENV]:
        argv += ["-e", key]
    argv += [*settings.args, settings.image]
    # The image's entrypoint is llama-server: the same flags as natively, minus the binary.
    inside = profile.model_copy(update={"file": Path(model)})
    return argv + server_argv(Path("llama-server"), inside, host="0.0.0.0", port=CONTAINER_PORT)[1:]


def container_env(profile: Profile, api_key: str, base: Mapping[str, str]) -> dict[str, str]:
    """The docker client's environment: where `-e KEY` (run_argv) takes each value from."""
    return {**base, **profile.env, SERVER_KEY_ENV: api_key}


async def _docker(docker: str, *args: str) -> int:
    """A docker command whose output does not matter (stop/rm of a maybe-absent container)."""
    child = await asyncio.create_subprocess_exec(
        docker, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await child.wait()


class DockerRuntime:
    def __init__(self, settings: DockerSettings, models_dir: Path) -> None:
        self.settings = settings
        self.models_dir = models_dir
        self.docker = docker_binary()

    def command(self, profile: Profile, port: int) -> list[str]:
        return run_argv(self.settings, self.models_dir, profile, port, self.docker)

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> process.ServerProcess:
        name = container_name(profile)
        await _docker(self.docker, "rm", "-f", name)  # one a killed daemon left behind
        key = new_server_key()
        server = await process.start(
            self.command(profile, port),
            env=container_env(profile, key, os.environ),
            port=port,
            run_dir=run_dir,
            name=profile.id,
            cleanup=[self.docker, "rm", "-f", name],  # if the daemon dies, the next removes it
            api_key=key,
        )

        async def remove(grace: float) -> None:
            # `docker stop` gives llama-server the grace period; `rm -f` covers a container
            # that --rm did not remove (e.g. the client was killed first).
            await _docker(self.docker, "stop", "-t", str(max(1, round(grace))), name)
            await _docker(self.docker, "rm", "-f", name)

        server.before_stop = remove
        return server

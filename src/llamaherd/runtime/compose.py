"""`herd compose ID`: a docker-compose.yml and .env that serve one profile without herd.

The original setup's way, for people who run `docker compose up` themselves: the compose
file holds the service (image, GPUs, models mount, port, llama-server's command line from
argv.py), and the .env the values one edits without touching it (image, models dir,
address). Written from a dict with PyYAML, so it is valid YAML by construction.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llamaherd.config import Config, Profile
from llamaherd.runtime.docker import CONTAINER_PORT, container_name, model_mount, run_argv


def compose_files(config: Config, profile: Profile, public_port: int) -> tuple[dict, dict]:
    """(compose document, .env values) for `profile`, published on public_port."""
    host_dir, mount, _ = model_mount(profile, config.models_dir)
    # The same llama-server flags as the docker runtime: everything after the image.
    argv = run_argv(config.docker, config.models_dir, profile, CONTAINER_PORT)
    # `$` would start a compose variable: `$$` is a literal one (a regex in override_tensor).
    command = [word.replace("$", "$$") for word in argv[argv.index(config.docker.image) + 1 :]]
    service: dict = {
        "image": "${HERD_IMAGE}",
        "container_name": container_name(profile),
        "command": command,
        "ports": ["${HERD_BIND}:${HERD_PORT}:" + str(CONTAINER_PORT)],
        "volumes": [f"${{MODELS_DIR}}:{mount}:ro"],
        "restart": "unless-stopped",
    }
    if profile.env:
        service["environment"] = dict(profile.env)
    if config.docker.gpus:
        device: dict = {"driver": "nvidia", "capabilities": ["gpu"]}
        if profile.gpus:
            device["device_ids"] = [str(g) for g in profile.gpus]
        else:
            device["count"] = "all"
        service["deploy"] = {"resources": {"reservations": {"devices": [device]}}}
    document = {"name": f"herd-{profile.id}", "services": {"llama-server": service}}
    env = {
        "HERD_PROFILE": profile.id,
        "HERD_IMAGE": config.docker.image,
        "MODELS_DIR": str(host_dir),
        "HERD_BIND": "127.0.0.1",
        "HERD_PORT": str(public_port),
    }
    return document, env


def write(config: Config, profile: Profile, directory: Path, public_port: int) -> list[Path]:
    """Write docker-compose.yml and .env into `directory`; return their paths."""
    document, env = compose_files(config, profile, public_port)
    directory.mkdir(parents=True, exist_ok=True)
    compose = directory / "docker-compose.yml"
    header = f"# Written by `herd compose {profile.id}`; values to change are in .env.\n"
    compose.write_text(header + yaml.safe_dump(document, sort_keys=False, width=1000))
    dotenv = directory / ".env"
    lines = [f"# `herd compose {profile.id}`: docker compose reads these."]
    lines += [f"{key}={value}" for key, value in env.items()]
    dotenv.write_text("\n".join(lines) + "\n")
    return [compose, dotenv]

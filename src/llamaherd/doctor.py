"""`herd doctor`: what herd would use, and whether it can work, in one report."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

from llamaherd import control
from llamaherd.config import Config
from llamaherd.daemon.record import running_record
from llamaherd.errors import ConfigError, HerdError
from llamaherd.llamacpp import binaries, build, cuda
from llamaherd.runtime import process, rpc


def report(config_path: str | Path | None = None) -> dict:
    """Each section has `ok` (bool) and the facts behind it."""
    config, config_section = _config(config_path)
    return {
        "config": config_section,
        "llama_server": _llama_server(config),
        "build_cache": {
            "ok": True,
            "pinned": str(build.pinned_build_dir()),
            "built": (build.pinned_build_dir() / "bin" / "llama-server").exists(),
        },
        "gpus": _gpus(),
        "ports": _ports(config),
        "cuda": _cuda(),
        "docker": _docker(config),
        "workers": _workers(config),
    }


def healthy(result: dict) -> bool:
    return all(section.get("ok", True) for section in result.values())


def _config(path: str | Path | None) -> tuple[Config | None, dict]:
    try:
        config = control.find_config(path)
    except ConfigError as error:
        return None, {"ok": False, "error": str(error)}
    return config, {"ok": True, "path": str(config.path), "profiles": len(config.models)}


def _llama_server(config: Config | None) -> dict:
    found = binaries.candidates(config.llama_server if config else None)
    if not found:
        return {"ok": False, "error": "no llama-server found; run `herd build`", "candidates": []}
    chosen = found[0]
    problem = binaries.check_llama_server(chosen.path)
    return {
        "ok": problem is None,
        **({"error": problem} if problem else {}),
        "path": str(chosen.path),
        "origin": chosen.origin,
        "version": binaries.version(chosen.path),
        "features": binaries.features(chosen.path),
        "candidates": [{"path": str(c.path), "origin": c.origin} for c in found],
    }


def _gpus() -> dict:
    """GPUs through nvidia-smi (the NVML sampler arrives with the dashboard)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"ok": True, "gpus": [], "note": "no NVIDIA driver (nvidia-smi) found: CPU only"}
    query = "--query-gpu=index,name,memory.total,compute_cap"
    result = subprocess.run(
        [smi, query, "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return {"ok": False, "gpus": [], "error": result.stderr.strip() or "nvidia-smi failed"}
    gpus = [
        dict(
            zip(
                ("index", "name", "memory", "compute_cap"),
                (part.strip() for part in line.split(",")),
                strict=False,
            )
        )
        for line in result.stdout.strip().splitlines()
    ]
    return {"ok": True, "gpus": gpus}


def _ports(config: Config | None) -> dict:
    host = config.server.host if config else "127.0.0.1"
    ports = {
        "public": config.server.port if config else 8080,
        "api": config.server.api_port if config else 8081,
    }
    herd_running = running_record() is not None
    status = {}
    for name, port in ports.items():
        free = process.port_free(host, port)
        status[name] = {
            "port": port,
            "free": free,
            "note": ""
            if free
            else ("herd daemon" if herd_running and name == "api" else "in use by another program"),
        }
    ok = all(entry["free"] or entry["note"] == "herd daemon" for entry in status.values())
    return {"ok": ok, "host": host, **status}


def _cuda() -> dict:
    """Whether this machine's nvcc can build for its GPUs (`herd build --backend cuda`)."""
    archs = cuda.detect_archs()
    path = cuda.find_nvcc()
    nvcc = None
    with contextlib.suppress(HerdError):
        nvcc = cuda.nvcc_info(path) if path else None
    facts: dict = {
        "archs": archs,
        "nvcc": str(path) if path else None,
        "release": nvcc.release if nvcc else None,
    }
    if not archs:
        return {"ok": True, **facts, "note": "no NVIDIA GPU: CUDA builds need --cuda-arch"}
    if nvcc is None:
        note = "no nvcc: install the CUDA toolkit, or use `herd build --docker`"
        return {"ok": True, **facts, "note": note}
    problems = cuda.unsupported(archs, nvcc)
    return {"ok": not problems, **facts, "problems": problems}


def _docker(config: Config | None) -> dict:
    """The docker CLI, its daemon and the NVIDIA container toolkit; required only when a
    profile runs in docker."""
    needed = config is not None and any(p.runtime == "docker" for p in config.models.values())
    docker = shutil.which("docker")
    facts: dict = {"needed": needed, "cli": docker, "daemon": False, "nvidia_toolkit": False}
    if docker is None:
        return {"ok": not needed, **facts, "error": "no docker CLI on PATH"}
    result = subprocess.run(
        [docker, "info", "--format", "{{json .Runtimes}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return {"ok": not needed, **facts, "error": error}
    try:
        runtimes = json.loads(result.stdout or "{}")
    except ValueError:
        runtimes = {}
    facts.update(daemon=True, nvidia_toolkit="nvidia" in runtimes)
    gpus_wanted = needed and config is not None and config.docker.gpus
    if gpus_wanted and not facts["nvidia_toolkit"]:
        error = (
            "docker has no nvidia runtime: install the NVIDIA Container Toolkit "
            "(nvidia-ctk runtime configure --runtime=docker), or set [docker] gpus = false"
        )
        return {"ok": False, **facts, "error": error}
    return {"ok": True, **facts}


def _workers(config: Config | None) -> dict:
    """Every RPC worker a profile names, and whether it answers now."""
    endpoints = sorted({e for p in (config.models.values() if config else []) for e in p.rpc})
    checks = rpc.check_all_sync(endpoints)
    return {"ok": all(c.reachable for c in checks), "workers": [c.as_json() for c in checks]}

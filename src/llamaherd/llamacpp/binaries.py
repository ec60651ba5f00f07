"""Find the llama-server to run, and what it can do.

Lookup order: the config's ``llama_server``, then ``PATH``, then herd's own build cache
(``herd build``). ``herd doctor`` shows every candidate and which one wins.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llamaherd.errors import HerdError
from llamaherd.llamacpp import build, cmake, pin

BINARY = "llama-server"


@dataclass(frozen=True)
class Found:
    path: Path
    origin: str  # "config", "PATH" or "cache"


def candidates(configured: Path | None = None) -> list[Found]:
    """Every llama-server herd could use, in the order it would pick them."""
    found = []
    if configured:
        found.append(Found(Path(configured).expanduser(), "config"))
    on_path = shutil.which(BINARY)
    if on_path:
        found.append(Found(Path(on_path), "PATH"))
    # The pinned release first, a GPU build before the CPU one; then any other build.
    pinned = [build.pinned_build_dir(b) / "bin" / BINARY for b in cmake.BACKEND_PREFERENCE]
    found += [Found(p, "cache") for p in pinned if p.exists()]
    others = sorted(pin.builds_root().glob(f"*/bin/{BINARY}")) if pin.builds_root().exists() else []
    found += [Found(p, "cache") for p in others if p not in pinned]
    return found


def find_llama_server(configured: Path | None = None) -> Found:
    """The llama-server to run; a clear error saying how to get one when there is none."""
    for candidate in candidates(configured):
        if candidate.origin == "config" and not os.access(candidate.path, os.X_OK):
            raise HerdError(
                f"llama_server = {candidate.path} in the config is not an executable file; "
                "fix the path or remove the key to use PATH or `herd build`"
            )
        return candidate
    raise HerdError(
        "no llama-server found (config, PATH, build cache); run `herd build` to build one"
    )


# llama.cpp renamed its RPC worker from rpc-server to ggml-rpc-server; either will do.
RPC_NAMES = ("ggml-rpc-server", "rpc-server")


def find_rpc_server(configured: Path | None = None) -> Path:
    """The RPC worker built with the llama-server herd would run (same build, same
    backends), else one on PATH."""
    beside: Path | None = None
    with contextlib.suppress(HerdError):
        beside = find_llama_server(configured).path.parent
    for name in RPC_NAMES:
        if beside and os.access(beside / name, os.X_OK):
            return beside / name
    for name in RPC_NAMES:
        if on_path := shutil.which(name):
            return Path(on_path)
    raise HerdError(
        "no rpc-server found beside llama-server or on PATH; run `herd build` "
        "(it builds one with GGML_RPC) on this machine"
    )


def version(path: Path) -> str:
    """llama-server's own version line, e.g. 'version: 11434 (abc123)'."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as error:
        return f"cannot run: {error}"
    text = result.stdout + result.stderr
    match = re.search(r"version: .*", text)
    return (
        match.group(0).strip() if match else text.strip().splitlines()[0] if text.strip() else "?"
    )


def features(path: Path) -> dict[str, bool]:
    """Capabilities herd relies on, read from --help and from the binary itself."""
    try:
        help_text = subprocess.run(
            [str(path), "--help"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        binary = path.read_bytes()
    except OSError:
        return {"fit": False, "anthropic_messages": False, "router_mode": False}
    return {
        "fit": "--fit " in help_text or "--fit," in help_text,
        "anthropic_messages": b"/v1/messages" in binary,
        "router_mode": "--models-dir" in help_text,
    }


def check_llama_server(path: Path) -> str | None:
    """What doctor requires of a llama-server (and `herd build --update` of a new one):
    it runs and says its version. None when it does."""
    if not os.access(path, os.X_OK):
        return f"{path} is not an executable file"
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {path}: {error}"
    if result.returncode != 0:
        return f"{path.name} --version exited with code {result.returncode}"
    if "version" not in result.stdout + result.stderr:
        return f"{path.name} --version does not say its version"
    return None

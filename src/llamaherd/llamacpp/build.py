"""Build llama.cpp (llama-server and friends) into a versioned cache directory.

The source is the pinned sdist (pin.py, fetched by source.py) or a checkout the user
names with ``--source``; cmake.py has the flags. Each build lives in
``<cache>/llama.cpp/<version>-<backend>/`` with its cmake build dir, a ``bin/`` of the
finished programs and a ``build.json`` stamp: when the stamp matches, a second call does
nothing and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp import cuda
from llamaherd.llamacpp.cmake import BACKEND_FLAGS, cmake_args
from llamaherd.llamacpp.pin import Pin, builds_root, current_pin, read_stamp
from llamaherd.llamacpp.source import Progress, resolve_source

# Programs herd uses. Names vary across llama.cpp versions (the RPC worker became
# ggml-rpc-server; llama-fit-params is new): whichever the tree defines is built.
TARGETS = ("llama-server", "llama-bench", "rpc-server", "ggml-rpc-server", "llama-fit-params")
REQUIRED_TARGETS = ("llama-server",)
# What llama.cpp's UI step logs once it has embedded the assets (scripts/ui-assets.cmake).
UI_EMBEDDED = re.compile(r"UI: embedded (\d+) assets")


@dataclass(frozen=True)
class BuildResult:
    version: str
    backend: str
    bin_dir: Path
    built: bool  # False: the cached build was already up to date
    log: Path | None
    ui_assets: int | None = None  # web UI files embedded in llama-server (None: unknown)


def pinned_build_dir(backend: str = "cpu", pin: Pin | None = None) -> Path:
    """Where the build of the pinned release (or `pin`) for a backend lives."""
    return builds_root() / f"b{(pin or current_pin()).build_number}-{backend}"


def cpu_fingerprint() -> str:
    """A short hash of the CPU's feature flags: a native build must not move to another CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def build(
    source: Path | None = None,
    backend: str = "cpu",
    *,
    jobs: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    cuda_arch: str | None = None,
    targets: Sequence[str] = TARGETS,
    pin: Pin | None = None,
    ui: bool | None = None,
) -> BuildResult:
    """Build llama.cpp's programs for a backend, or say the cached build is up to date.

    With `source`, nothing is downloaded (an offline machine builds its own checkout).
    `cuda_arch` overrides the detected GPU architectures ("89,120"); `targets` narrows
    what is built (llama-server is always among them). `ui`: build the web UI with npm
    (None: when npm is installed).
    """
    if backend not in BACKEND_FLAGS:
        cmake_args(backend, build_number=None, ccache=None)  # raises the one message
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise UsageError(f"unknown target {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    wanted = [t for t in TARGETS if t in targets or t in REQUIRED_TARGETS]
    toolchain = _toolchain(backend, cuda_arch)
    tree, build_number, version = resolve_source(source, progress, pin)
    home = builds_root() / f"{version}-{backend}"
    cmake = find_tool("cmake")
    if not cmake:
        raise HerdError(
            "cmake not found; install it (apt install cmake, or pip install 'llamaherd[build]')"
        )
    has_npm = shutil.which("npm") is not None
    if ui and not has_npm:
        raise UsageError("--ui builds the web UI with npm, which is not installed; install Node.js")
    ui_with_npm = has_npm if ui is None else ui
    args = cmake_args(
        backend,
        build_number=build_number,
        ccache=find_tool("ccache"),
        ui_with_npm=ui_with_npm,
        **toolchain,
    )
    stamp = {
        "source": str(tree),
        "cmake_args": args,
        "cpu": cpu_fingerprint(),
        "targets": wanted,
    }
    if "nvcc" in toolchain:  # a CUDA upgrade in place must rebuild
        stamp["nvcc"] = cuda.nvcc_info(Path(toolchain["nvcc"])).release
    bin_dir = home / "bin"
    stamp_file = home / "build.json"
    # A pinned tree never changes, so a matching stamp means nothing to do. A user's
    # checkout can change under us: let the (incremental) build decide.
    if not force and source is None and read_stamp(stamp_file) == stamp and _has_required(bin_dir):
        return BuildResult(version, backend, bin_dir, False, None, _ui_assets(home / "build.log"))

    build_dir = home / "build"
    log = home / "build.log"
    home.mkdir(parents=True, exist_ok=True)
    ninja = find_tool("ninja")
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    before = _binary_mtimes(bin_dir)
    with log.open("w") as log_file:
        _run([cmake, "-S", str(tree), "-B", str(build_dir), *generator, *args], log_file, None)
        available = _targets(cmake, build_dir)
        targets = [t for t in wanted if t in available]
        missing = [t for t in REQUIRED_TARGETS if t not in targets]
        if missing:
            raise HerdError(f"this llama.cpp tree has no {', '.join(missing)} target (see {log})")
        jobs = jobs or os.cpu_count() or 2
        _run(
            [cmake, "--build", str(build_dir), "--target", *targets, "-j", str(jobs)],
            log_file,
            progress,
        )
    bin_dir.mkdir(exist_ok=True)
    for target in targets:
        built = build_dir / "bin" / target
        if built.exists():
            # Copy beside, then rename: a running llama-server keeps its old file.
            staged = bin_dir / f".{target}.new"
            shutil.copy2(built, staged)
            staged.replace(bin_dir / target)
    stamp_file.write_text(json.dumps(stamp, indent=2))
    changed = _binary_mtimes(bin_dir) != before
    return BuildResult(version, backend, bin_dir, changed or force, log, _ui_assets(log))


def _ui_assets(log: Path) -> int | None:
    """How many web UI files the build embedded in llama-server, from its log."""
    try:
        found = UI_EMBEDDED.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def _toolchain(backend: str, cuda_arch: str | None) -> dict:
    """Check the backend's compiler is there before cmake runs; its cmake_args keywords."""
    if cuda_arch and backend != "cuda":
        raise UsageError("--cuda-arch goes with --backend cuda")
    if backend == "cuda":
        archs, nvcc = cuda.resolve(cuda_arch)
        return {"cuda_archs": archs, "nvcc": str(nvcc.path)}
    if backend == "vulkan" and not shutil.which("glslc"):
        raise UsageError(
            "a Vulkan build needs the glslc shader compiler and the Vulkan headers; "
            "install them (Debian/Ubuntu: apt install glslc libvulkan-dev) and try again"
        )
    return {}


def find_tool(name: str) -> str | None:
    """A build tool on PATH, else the one pip put beside this Python (llamaherd[build])."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def _has_required(bin_dir: Path) -> bool:
    return all((bin_dir / t).exists() for t in REQUIRED_TARGETS)


def _binary_mtimes(bin_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in bin_dir.glob("*")} if bin_dir.exists() else {}


def _targets(cmake: str, build_dir: Path) -> set[str]:
    """The target names cmake generated (both Ninja and Make answer the 'help' target)."""
    listing = subprocess.run(
        [cmake, "--build", str(build_dir), "--target", "help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # Ninja prints "name: phony", Make prints "... name".
    return {line.removeprefix("... ").split(":")[0].strip() for line in listing.splitlines()}


# "[12/345] Building ..." (ninja) or "[ 42%] Building ..." (make)
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


def _run(cmd: list[str], log_file: TextIO, progress: Progress | None) -> None:
    """Run a build step, teeing its output to the log and turning it into progress."""
    log_file.write("$ " + " ".join(cmd) + "\n")
    log_file.flush()
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        log_file.write(line)
        tail = (tail + [line.rstrip()])[-15:]
        if progress and (m := _NINJA_STEP.match(line)):
            progress("build", int(m.group(1)), int(m.group(2)))
        elif progress and (m := _MAKE_PERCENT.match(line)):
            progress("build", int(m.group(1)), 100)
    if process.wait() != 0:
        raise HerdError(
            f"build step failed: {' '.join(cmd[:3])} ... (full log: {log_file.name})\n"
            + "\n".join(tail)
        )


def describe(result: BuildResult) -> dict:
    """JSON-friendly view for `herd build --json`."""
    data = asdict(result)
    data["bin_dir"] = str(result.bin_dir)
    data["log"] = str(result.log) if result.log else None
    return data

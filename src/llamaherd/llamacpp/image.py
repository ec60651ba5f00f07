"""`herd build --docker`: the image with llama-server and rpc-server, from ./Dockerfile.

The build context is the same llama.cpp tree `herd build` compiles (the pinned sdist or
--source), and the cmake flags are cmake.py's, so an image and a native build of the
same tree differ only in where they run. The GPU architectures are this machine's
(or --cuda-arch), checked against the CUDA release inside the image instead of a local nvcc.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp import cmake, cuda
from llamaherd.llamacpp.source import resolve_source

DOCKERFILE = Path(__file__).with_name("Dockerfile")
IMAGE_CUDA = (12, 8)  # the nvidia/cuda base image's release (see the Dockerfile's BUILD_IMAGE)
CPU_IMAGE = "ubuntu:24.04"
BACKENDS = ("cuda", "cpu")
STDERR_FD = 2  # the process's own stderr, whatever sys.stderr was replaced with


def default_tag(backend: str) -> str:
    return f"llamaherd/llama-server:{backend}"


def build_argv(
    context: Path,
    backend: str,
    *,
    archs: list[int],
    tag: str,
    build_number: int | None,
    docker: str = "docker",
) -> list[str]:
    """The `docker build` command line; a pure function, so tests can read it."""
    _check_backend(backend)
    # The backend's own flags (CUDA, archs) the Dockerfile adds itself, keyed on BACKEND.
    common = cmake.cmake_args("cpu", build_number=build_number, ccache=None, native=False)
    argv = [docker, "build", "-f", str(DOCKERFILE), "-t", tag]
    argv += ["--build-arg", f"BACKEND={backend}", "--build-arg", f"CMAKE_ARGS={' '.join(common)}"]
    if backend == "cuda":
        argv += ["--build-arg", "CUDA_ARCHS=" + ";".join(f"{a}-real" for a in archs)]
    else:
        argv += ["--build-arg", f"BUILD_IMAGE={CPU_IMAGE}", "--build-arg", f"RUN_IMAGE={CPU_IMAGE}"]
    return [*argv, str(context)]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"--docker builds {' or '.join(BACKENDS)} images, not '{backend}'")


def build_image(
    source: Path | None, backend: str, *, cuda_arch: str | None, tag: str | None
) -> tuple[str, list[str]]:
    """Build the image (docker's own output goes to the terminal); return (tag, argv)."""
    _check_backend(backend)
    docker = shutil.which("docker")
    if docker is None:
        raise UsageError("`herd build --docker` needs the docker CLI; install Docker first")
    if cuda_arch and backend != "cuda":
        raise UsageError("--cuda-arch goes with --backend cuda")
    archs: list[int] = []
    if backend == "cuda":
        archs = cuda.wanted_archs(cuda_arch)
        problems = cuda.unsupported(archs, cuda.Nvcc(Path("(image)"), IMAGE_CUDA))
        if problems:
            raise UsageError(
                f"the image's CUDA {IMAGE_CUDA[0]}.{IMAGE_CUDA[1]} cannot build: "
                f"{'; '.join(problems)}"
            )
    tree, build_number, _ = resolve_source(source)
    tag = tag or default_tag(backend)
    argv = build_argv(tree, backend, archs=archs, tag=tag, build_number=build_number, docker=docker)
    # docker's own progress goes to stderr, so stdout stays clean for --json.
    if subprocess.run(argv, stdout=STDERR_FD, check=False).returncode != 0:
        raise HerdError(f"docker build failed: {shlex.join(argv)}")
    return tag, argv

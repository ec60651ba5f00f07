"""CUDA for `herd build`: which GPU architectures to compile for, and whether nvcc can.

A CUDA build of llama.cpp for every architecture takes an hour and a few GB; one for the
GPUs in the box takes minutes. So herd asks the GPUs for their compute capabilities
(NVML, through the same GpuSource the dashboard uses, else `nvidia-smi`), and checks that
the installed nvcc knows each of them before cmake gets the chance to fail an hour in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llamaherd.errors import HerdError, UsageError
from llamaherd.gpus import gpu_source

# The CUDA release that first compiles each architecture (sm_XY), and the one that dropped
# it (None: still supported). From NVIDIA's CUDA release notes: Ada and Hopper came with
# 11.8, Blackwell with 12.8 (sm_100, sm_120) and 12.9 (sm_103, sm_121); 13.0 dropped
# Maxwell, Pascal and Volta and renamed Thor's sm_101 to sm_110.
ARCH_SUPPORT: dict[int, tuple[tuple[int, int], tuple[int, int] | None]] = {
    50: ((6, 0), (13, 0)),
    52: ((6, 5), (13, 0)),
    53: ((7, 0), (13, 0)),
    60: ((8, 0), (13, 0)),
    61: ((8, 0), (13, 0)),
    62: ((8, 0), (13, 0)),
    70: ((9, 0), (13, 0)),
    72: ((10, 0), (13, 0)),
    75: ((10, 0), None),
    80: ((11, 0), None),
    86: ((11, 1), None),
    87: ((11, 4), None),
    89: ((11, 8), None),
    90: ((11, 8), None),
    100: ((12, 8), None),
    101: ((12, 8), (13, 0)),
    103: ((12, 9), None),
    110: ((13, 0), None),
    120: ((12, 8), None),
    121: ((12, 9), None),
}

INSTALL_HINT = "https://developer.nvidia.com/cuda-downloads"
DEFAULT_HOMES = ("/usr/local/cuda",)  # where CUDA installers put the toolkit


@dataclass(frozen=True)
class Nvcc:
    path: Path
    version: tuple[int, int]

    @property
    def release(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def parse_archs(text: str) -> list[int]:
    """`--cuda-arch 89,120` (or `8.9,12.0`, `sm_89`) -> [89, 120]."""
    archs = []
    for word in re.split(r"[,;\s]+", text.strip()):
        if not word:
            continue
        match = re.fullmatch(r"(?:sm_)?(\d{1,2})\.(\d)|(?:sm_)?(\d{2,3})", word)
        if not match:
            raise UsageError(
                f"--cuda-arch '{word}': expected compute capabilities such as 89,120 "
                "(or 8.9,12.0); `nvidia-smi --query-gpu=compute_cap --format=csv` lists yours"
            )
        archs.append(int(match[1] + match[2]) if match[1] else int(match[3]))
    if not archs:
        raise UsageError("--cuda-arch is empty; give compute capabilities such as 89,120")
    return sorted(set(archs))


def arch_of(compute_cap: str | None) -> int | None:
    """'8.9' (what NVML and nvidia-smi say) -> 89."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", compute_cap or "")
    return int(match[1]) * 10 + int(match[2]) if match else None


def detect_archs() -> list[int]:
    """The compute capabilities of this machine's GPUs: NVML first, then nvidia-smi."""
    reading = gpu_source().sample()
    archs = {a for gpu in reading.gpus if (a := arch_of(gpu.get("compute_cap")))}
    if not archs and (smi := shutil.which("nvidia-smi")):
        result = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode == 0:
            archs = {a for line in result.stdout.splitlines() if (a := arch_of(line))}
    return sorted(archs)


def find_nvcc() -> Path | None:
    """nvcc on PATH, else where CUDA installs it ($CUDA_HOME, /usr/local/cuda)."""
    if found := shutil.which("nvcc"):
        return Path(found)
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), *DEFAULT_HOMES]
    for home in filter(None, homes):
        candidate = Path(home) / "bin" / "nvcc"
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc_info(path: Path) -> Nvcc:
    """nvcc's release from `nvcc --version` ('Cuda compilation tools, release 12.8, ...')."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as error:
        raise HerdError(f"cannot run {path}: {error}") from None
    match = re.search(r"release (\d+)\.(\d+)", result.stdout + result.stderr)
    if not match:
        raise HerdError(f"{path} --version does not say its CUDA release; is it nvcc?")
    return Nvcc(path, (int(match[1]), int(match[2])))


def unsupported(archs: list[int], nvcc: Nvcc) -> list[str]:
    """One line per architecture this nvcc cannot compile, saying what would."""
    problems = []
    for arch in archs:
        support = ARCH_SUPPORT.get(arch)
        if support is None:
            newest = max(ARCH_SUPPORT)
            if arch > newest:
                problems.append(
                    f"sm_{arch} is newer than any CUDA release herd knows; "
                    "install the latest CUDA toolkit"
                )
            else:
                problems.append(f"sm_{arch} is not a CUDA architecture")
            continue
        first, dropped = support
        if nvcc.version < first:
            problems.append(
                f"sm_{arch} needs CUDA {first[0]}.{first[1]} or newer; "
                f"install CUDA toolkit >= {first[0]}.{first[1]} ({INSTALL_HINT})"
            )
        elif dropped is not None and nvcc.version >= dropped:
            problems.append(
                f"sm_{arch} was dropped in CUDA {dropped[0]}.{dropped[1]}; "
                f"install a CUDA 12.x toolkit beside it and put its nvcc first on PATH"
            )
    return problems


def wanted_archs(requested: str | None) -> list[int]:
    """`--cuda-arch`, else this machine's GPUs; a UsageError when there are none."""
    archs = parse_archs(requested) if requested else detect_archs()
    if not archs:
        raise UsageError(
            "no NVIDIA GPU found to build CUDA for; name the architectures with "
            "--cuda-arch (e.g. --cuda-arch 89,120 for an RTX 4090 and an RTX 5070 Ti)"
        )
    return archs


def resolve(requested: str | None) -> tuple[list[int], Nvcc]:
    """The architectures to build for (`--cuda-arch`, else the GPUs') and a checked nvcc.

    Raises UsageError (exit 2) when there is nothing to build for or nvcc cannot do it.
    """
    archs = wanted_archs(requested)
    path = find_nvcc()
    if path is None:
        raise UsageError(
            "CUDA build needs nvcc, which is not on PATH nor in $CUDA_HOME or /usr/local/cuda; "
            f"install the CUDA toolkit ({INSTALL_HINT}), or build the Docker image "
            "(`herd build --docker`), which brings its own"
        )
    nvcc = nvcc_info(path)
    problems = unsupported(archs, nvcc)
    if problems:
        raise UsageError(f"nvcc {nvcc.release} at {nvcc.path} cannot build: {'; '.join(problems)}")
    return archs, nvcc

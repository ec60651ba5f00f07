"""llama.cpp's own memory numbers, to hold the planner against.

* `fit_print`: `llama-fit-params --fit-print on` loads the model without allocating
  anything and prints what llama.cpp would allocate per device (model, context, compute,
  in MiB) for the given flags: `herd plan --check`.
* `buffer_sizes`: the buffers a running llama-server reports in its log as it loads
  (`... model buffer size = X MiB`, `KV buffer size`, `compute buffer size`,
  `output buffer size`): what benchmarks/planner_accuracy.py compares with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from llamaherd.errors import HerdError

MiB = 1024**2

FIT_PARAMS = "llama-fit-params"


def find_fit_params(llama_server: Path | None) -> Path | None:
    """llama-fit-params beside the llama-server herd uses (herd build puts both in one
    bin dir), else on PATH."""
    if llama_server is not None:
        beside = Path(llama_server).with_name(FIT_PARAMS)
        if beside.exists():
            return beside
    found = shutil.which(FIT_PARAMS)
    return Path(found) if found else None


def fit_print(binary: Path, model: Path, flags: list[str], timeout: float = 300) -> dict:
    """{device: {"weights", "kv_cache", "compute"}} in bytes, as llama.cpp projects them.

    Device names are llama.cpp's (CUDA0, ...); the CPU is "Host"."""
    argv = [str(binary), "-m", str(model), "--fit-print", "on", *_without_fit(flags)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HerdError(f"{binary} failed to run: {error}") from None
    rows: dict[str, dict[str, int]] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            model_mib, context_mib, compute_mib = (int(p) for p in parts[1:])
            rows[parts[0]] = {
                "weights": model_mib * MiB,
                "kv_cache": context_mib * MiB,
                "compute": compute_mib * MiB,
            }
    if done.returncode != 0 or not rows:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise HerdError(f"{binary.name} could not project the memory use: {' / '.join(tail)}")
    return rows


def _without_fit(flags: list[str]) -> list[str]:
    """The plan's flags minus `--fit off` (llama-fit-params only prints with fit on)."""
    out, skip = [], False
    for flag in flags:
        if skip:
            skip = False
            continue
        if flag == "--fit":
            skip = True
            continue
        out.append(flag)
    return out


# `load_tensors:   CPU_Mapped model buffer size =   250.13 MiB`
# `llama_kv_cache:        CPU KV buffer size =   512.00 MiB`
# `sched_reserve:        CPU compute buffer size =    98.01 MiB`
# `llama_context:        CPU  output buffer size =     0.49 MiB`
BUFFER_LINE = re.compile(
    r"(?P<buffer>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*"
    r"(?P<mib>[0-9.]+) MiB"
)
KINDS = {
    "model": "weights",
    "KV": "kv_cache",
    "RS": "kv_cache",
    "compute": "compute",
    "output": "overhead",
}


def buffer_sizes(log: str) -> dict[str, dict[str, int]]:
    """{device: {"weights", "kv_cache", "compute", "overhead"}} in bytes from a
    llama-server log. Host buffers (CPU, CPU_Mapped, CPU_REPACK, CUDA_Host) count as
    "CPU"; llama.cpp prints sizes rounded to 0.01 MiB."""
    sizes: dict[str, dict[str, int]] = defaultdict(
        lambda: {"weights": 0, "kv_cache": 0, "compute": 0, "overhead": 0}
    )
    for match in BUFFER_LINE.finditer(log):
        buffer = match["buffer"]
        device = "CPU" if buffer.startswith("CPU") or buffer.endswith("_Host") else buffer
        sizes[device][KINDS[match["kind"]]] += round(float(match["mib"]) * MiB)
    return dict(sizes)

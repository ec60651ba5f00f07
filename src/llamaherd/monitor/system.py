"""Host readings through psutil: CPU, memory, load, the models dir's disk, and each
llama-server process's own RSS and CPU.

psutil's CPU percentages are measured between two calls, so the sampler keeps one
`SystemSampler` (and one psutil.Process per server pid) alive between samples; the first
sample of a new process reads 0.0.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import psutil


class SystemSampler:
    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}
        psutil.cpu_percent(percpu=True)  # prime the counters: the next call measures from here

    def sample(self, models_dir: Path | None) -> dict[str, Any]:
        """Host-wide numbers (CPU %, memory in bytes, load, disk of `models_dir`)."""
        per_core = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        return {
            "cpu_percent": round(sum(per_core) / len(per_core), 1) if per_core else 0.0,
            "cpu_per_core": per_core,
            "cpu_count": psutil.cpu_count(),
            "memory_total": memory.total,
            "memory_used": memory.total - memory.available,
            "memory_available": memory.available,
            "memory_percent": memory.percent,
            "swap_total": swap.total,
            "swap_used": swap.used,
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "disk": _disk(models_dir),
        }

    def processes(self, pids: list[int]) -> dict[int, dict[str, Any]]:
        """RSS (bytes) and CPU % (of one core; above 100 when it uses several) per pid."""
        for gone in set(self._processes) - set(pids):
            del self._processes[gone]
        found: dict[int, dict[str, Any]] = {}
        for pid in pids:
            try:
                process = self._processes.get(pid)
                if process is None:
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent()  # first call only starts the measurement
                with process.oneshot():
                    found[pid] = {
                        "rss": process.memory_info().rss,
                        "cpu_percent": process.cpu_percent(),
                    }
            except psutil.Error:
                self._processes.pop(pid, None)
        return found


def _disk(path: Path | None) -> dict[str, Any] | None:
    """Usage of the filesystem holding `path` (or its nearest existing parent)."""
    if path is None:
        return None
    probe = Path(path).expanduser()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    with contextlib.suppress(OSError):
        usage = psutil.disk_usage(str(probe))
        return {
            "path": str(path),
            "total": usage.total,
            "used": usage.used,
            "free": usage.free,
            "percent": usage.percent,
        }
    return None

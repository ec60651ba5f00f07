"""GPU readings: NVML on a machine with an NVIDIA driver, a JSON-fed fake everywhere else.

Both sources give the same shape, one dict per GPU:

    {"index", "name", "uuid", "memory_used", "memory_total" (bytes), "utilization",
     "memory_utilization" (%), "temperature" (C), "power_draw", "power_limit" (W),
     "fan" (%), "clock_sm", "clock_memory" (MHz), "compute_cap" ("8.9"),
     "processes": [{"pid", "used_memory"}]}

A field is None when the GPU does not report it (NVML's NotSupported: fans on passively
cooled cards, power on some laptops). No driver is not an error: the reading is an empty
list with a `note` saying why, so a CPU-only box still gets a dashboard.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

FAKE_ENV = "HERD_FAKE_GPUS"


@dataclass
class GpuReading:
    gpus: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why `gpus` is empty (no driver, NVML failed), else None


class GpuSource(Protocol):
    """Where GPU readings come from; the sampler calls `sample()` once a second."""

    def sample(self) -> GpuReading: ...

    def close(self) -> None: ...


def gpu_source() -> GpuSource:
    """The fake when $HERD_FAKE_GPUS names a JSON file (tests, demos), else NVML.

    Chosen by environment because the daemon is a subprocess of whoever starts it.
    """
    fake = os.environ.get(FAKE_ENV)
    return FakeGpuSource(Path(fake)) if fake else NvmlSource()


class NvmlSource:
    """NVML through nvidia-ml-py. Initialised lazily and once: a missing driver is
    reported in every reading's note rather than retried each second."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._failure: str | None = None
        self._lock = threading.Lock()  # sample() runs in a worker thread

    def _init(self) -> Any:
        if self._nvml is None and self._failure is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except ImportError:
                self._failure = "nvidia-ml-py is not installed: no GPU readings"
            except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
                self._failure = f"no NVIDIA driver (NVML: {error}): CPU only"
        return self._nvml

    def sample(self) -> GpuReading:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return GpuReading([], self._failure)
            try:
                count = nvml.nvmlDeviceGetCount()
                return GpuReading([_read_device(nvml, i) for i in range(count)])
            except nvml.NVMLError as error:
                return GpuReading([], f"NVML failed: {error}")

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
                self._nvml = None


def _read_device(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)

    def get(call: Callable[..., Any], *args: Any) -> Any:
        """One NVML query; None when this GPU does not support it (or it fails)."""
        try:
            return call(handle, *args)
        except nvml.NVMLError:
            return None

    memory = get(nvml.nvmlDeviceGetMemoryInfo)
    rates = get(nvml.nvmlDeviceGetUtilizationRates)
    power = get(nvml.nvmlDeviceGetPowerUsage)
    limit = get(nvml.nvmlDeviceGetEnforcedPowerLimit)
    name = get(nvml.nvmlDeviceGetName)
    uuid = get(nvml.nvmlDeviceGetUUID)
    capability = get(nvml.nvmlDeviceGetCudaComputeCapability)  # (major, minor)
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else name,
        "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
        "memory_used": memory.used if memory else None,
        "memory_total": memory.total if memory else None,
        "utilization": rates.gpu if rates else None,
        "memory_utilization": rates.memory if rates else None,
        "temperature": get(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        "power_draw": power / 1000 if power is not None else None,  # mW -> W
        "power_limit": limit / 1000 if limit is not None else None,
        "fan": get(nvml.nvmlDeviceGetFanSpeed),
        "clock_sm": get(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
        "clock_memory": get(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM),
        "compute_cap": "{}.{}".format(*capability)
        if capability
        else None,  # herd build --backend cuda
        "processes": _processes(nvml, get),
    }


def _processes(nvml: Any, get: Callable[..., Any]) -> list[dict[str, Any]]:
    """Compute and graphics processes on one GPU, each pid once (a process can be both)."""
    seen: dict[int, dict[str, Any]] = {}
    for call in (
        nvml.nvmlDeviceGetComputeRunningProcesses,
        nvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        for process in get(call) or []:
            # usedGpuMemory is None where the driver cannot tell (e.g. under WDDM).
            seen.setdefault(process.pid, {"pid": process.pid, "used_memory": process.usedGpuMemory})
    return list(seen.values())


class FakeGpuSource:
    """GPUs described in a JSON file, in NVML's shape: for machines without a GPU.

    The file is `{"gpus": [{...fields as NvmlSource gives them...}]}` and is re-read on
    every sample, so a test can change a value while the daemon runs. A GPU may also say
    `"child_process_memory": <bytes>`: then every llama-server child of this process
    shows up in its `processes` with that much memory, added to `memory_used` — what NVML
    would report for servers that offload onto that GPU.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def sample(self) -> GpuReading:
        try:
            described = json.loads(self.path.read_text())["gpus"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            return GpuReading([], f"fake GPU file {self.path} unreadable: {error}")
        servers = _llama_server_children()
        gpus = []
        for index, entry in enumerate(described):
            gpu = {key: entry.get(key) for key in _FIELDS}
            gpu["index"] = entry.get("index", index)
            processes = [dict(p) for p in entry.get("processes", [])]
            per_server = entry.get("child_process_memory")
            if per_server:
                processes += [{"pid": pid, "used_memory": per_server} for pid in servers]
                gpu["memory_used"] = (gpu["memory_used"] or 0) + per_server * len(servers)
            gpu["processes"] = processes
            gpus.append(gpu)
        return GpuReading(gpus)

    def close(self) -> None:
        pass


_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory_used",
    "memory_total",
    "utilization",
    "memory_utilization",
    "temperature",
    "power_draw",
    "power_limit",
    "fan",
    "clock_sm",
    "clock_memory",
    "compute_cap",
)


def _llama_server_children() -> list[int]:
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name() == "llama-server":
                    found.append(child.pid)
    return sorted(found)

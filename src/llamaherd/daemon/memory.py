"""What the devices can hold and what each profile needs: the scheduler's memory model.

- `capacity()`: per device, the bytes models may use: each GPU's total (NVML, or
  $HERD_FAKE_GPUS) less `[server] gpu_margin_mb`, and "CPU" for host RAM less
  `ram_margin_mb`.
- `place(profile, free)`: where a profile goes given what is free, or None when it does
  not fit there. A profile that pins its layers (`n_gpu_layers`, no `fit`) needs what the
  planner estimates for that placement. A profile left to llama.cpp's `--fit` needs the
  placement `herd plan` picks when it has the GPUs to itself; beside other models it goes
  to one GPU that holds it whole (the fullest such GPU: big gaps stay big), else to the
  split the planner finds over the free memory, if that keeps as many layers on the GPUs.
- `measure(profile, placement, log)`: after a start, llama-server's own buffer lines
  correct the planner's estimate for that profile from then on (kept in the state dir,
  forgotten when the profile or its file changes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from llamaherd.config import Profile, ServerSettings
from llamaherd.fsutil import write_text_if_changed
from llamaherd.gguf import budget
from llamaherd.gguf import check as gguf_check
from llamaherd.gguf import plan as gguf_plan
from llamaherd.gguf import search as gguf_search

log = logging.getLogger(__name__)

CPU = "CPU"
MiB = gguf_plan.MiB
Bytes = dict[str, int]  # device name ("GPU0", ..., "CPU") -> bytes
CAPACITY_FRESH_S = 2.0


@dataclass(frozen=True)
class Placement:
    """Where a model goes and what it holds there."""

    footprint: Bytes  # bytes per device
    gpus: tuple[int, ...] | None = None  # GPU indices to show it (None: as its profile says)
    measured: bool = False  # corrected by what llama-server reported for this profile

    def launched(self, profile: Profile) -> Profile:
        """The profile as started: on the GPUs chosen here, unless it names its own."""
        if self.gpus is None or profile.gpus is not None:
            return profile
        return profile.model_copy(update={"gpus": list(self.gpus)})


class HoldsMemory(Protocol):
    """A running model, as far as memory goes (daemon/model.py's Model)."""

    @property
    def id(self) -> str: ...

    placement: Placement | None


def describe(footprint: Bytes) -> str:
    """'GPU0 8.1 GiB + CPU 310.0 MiB' (devices holding nothing left out)."""
    parts = [f"{d} {gguf_plan.format_size(n)}" for d, n in footprint.items() if n]
    return " + ".join(parts) or "nothing"


class Memory:
    def __init__(
        self,
        settings: ServerSettings,
        state_dir: Path | None = None,
        *,
        gpus: list[gguf_plan.Gpu] | None = None,
        host_memory: int | None = None,
    ) -> None:
        self.settings = settings
        self._gpus = gpus  # None: read NVML (or the fake) on each admission
        self._host = host_memory  # None: psutil's total
        self._path = state_dir / "footprints.json" if state_dir else None
        self._lock = threading.Lock()
        self._capacity: tuple[float, Bytes] | None = None
        self._alone_plans: dict[tuple[str, int, tuple[tuple[str, int], ...]], gguf_plan.Plan] = {}
        self._measured: dict[str, dict] = self._load()

    # -- what the machine has ----------------------------------------------------------
    def gpus(self) -> list[gguf_plan.Gpu]:
        return self._gpus if self._gpus is not None else budget.gpu_totals()

    def capacity(self) -> Bytes:
        margin = self.settings.gpu_margin_mb * MiB
        devices = {g.name: max(0, g.memory - margin) for g in self.gpus()}
        host = self._host if self._host is not None else psutil.virtual_memory().total
        devices[CPU] = max(0, host - self.settings.ram_margin_mb * MiB)
        return devices

    def capacity_now(self) -> Bytes:
        """capacity(), read at most every few seconds (for /status, polled each second)."""
        now = time.monotonic()
        if self._capacity is None or now - self._capacity[0] > CAPACITY_FRESH_S:
            self._capacity = (now, self.capacity())
        return self._capacity[1]

    def devices(self, running: Sequence[HoldsMemory]) -> list[dict]:
        """Each device's capacity, margin, what each running model holds, and what is free."""
        margins = {CPU: self.settings.ram_margin_mb * MiB}
        out = []
        for name, capacity in self.capacity_now().items():
            used = {
                m.id: m.placement.footprint.get(name, 0)
                for m in running
                if m.placement and m.placement.footprint.get(name)
            }
            out.append(
                {
                    "name": name,
                    "capacity": capacity,
                    "margin": margins.get(name, self.settings.gpu_margin_mb * MiB),
                    "used": used,
                    "free": capacity - sum(used.values()),
                }
            )
        return out

    # -- what a profile needs ------------------------------------------------------------
    def alone(self, profile: Profile) -> Placement:
        """Where `profile` goes with the machine to itself (whether it fits or not): its
        footprint for the "no room" answer and the model list."""
        info = budget.read_cached(profile)
        if profile.rpc:
            return Placement({})  # what the workers hold is theirs; the local part unknown
        if info is None:
            return self._unplaced(profile)
        settings = dataclasses.replace(budget.settings_for(profile, info), margin=0)
        capacity = self.capacity()
        gpus = self._gpus_for(profile, capacity)
        if not gpus or budget.pinned(profile):
            layout = self._pinned_layout(profile, info, gpus)
            return self._placement(profile, gguf_plan.estimate(info, settings, layout, gpus))
        plan = self._alone_plan(profile, info, settings, capacity)
        return self._placement(profile, plan.estimate)

    def place(
        self, profile: Profile, free: Bytes, capacity: Bytes | None = None
    ) -> Placement | None:
        """Where `profile` goes when `free` is what each device has left; None: no room.
        `capacity` (default: read now) is what the devices hold in all."""
        if profile.rpc:
            return Placement({})  # RPC workers hold most of it: not counted here
        info = budget.read_cached(profile)
        if info is None:  # unreadable header: count its file as RAM, all we can tell
            return _within(self._unplaced(profile), free)
        settings = dataclasses.replace(budget.settings_for(profile, info), margin=0)
        gpus = self._gpus_for(profile, free)
        if not gpus or budget.pinned(profile):
            layout = self._pinned_layout(profile, info, gpus)
            est = gguf_plan.estimate(info, settings, layout, gpus)
            return _within(self._placement(profile, est), free)
        capacity = self.capacity() if capacity is None else capacity
        alone = self._alone_plan(profile, info, settings, capacity)
        if alone.estimate.placement.n_gpu_layers >= info.n_layer + 1:
            on_one = [(g, gguf_plan.estimate(info, settings, _all_layers(info), [g])) for g in gpus]
            whole = [(g, e) for g, e in on_one if e.fits and e.cpu.total <= free.get(CPU, 0)]
            if whole:
                gpu, est = min(whole, key=lambda pair: pair[0].memory)  # the fullest that fits
                return _within(self._placement(profile, est, (_index(gpu.name),)), free)
        # Beside others, a MoE model may keep more of its experts in RAM, as llama.cpp's
        # --fit does for it (attention and KV stay on the GPUs); no layer may leave them.
        split = gguf_search.best_plan(info, settings, gpus).estimate
        as_good = split.placement.n_gpu_layers >= alone.estimate.placement.n_gpu_layers
        used = tuple(_index(d.name) for d in split.gpus if d.layers)
        return _within(self._placement(profile, split, used or None), free) if as_good else None

    @staticmethod
    def _gpus_for(profile: Profile, devices: Bytes) -> list[gguf_plan.Gpu]:
        gpus = [gguf_plan.Gpu(name, n) for name, n in devices.items() if name != CPU]
        if profile.gpus is not None:  # the profile's own choice
            gpus = [g for g in gpus if _index(g.name) in profile.gpus]
        return gpus

    def _alone_plan(
        self,
        profile: Profile,
        info: budget.gguf_header.ModelInfo,
        settings: gguf_plan.Settings,
        capacity: Bytes,
    ) -> gguf_plan.Plan:
        """`herd plan`'s placement with the GPUs to itself; kept, since the scheduler asks
        for it at each set of evictions it tries (a search takes a moment on big models)."""
        key = (profile.model_dump_json(), info.file_size, tuple(capacity.items()))
        if key not in self._alone_plans:
            gpus = self._gpus_for(profile, capacity)
            self._alone_plans[key] = gguf_search.best_plan(info, settings, gpus)
        return self._alone_plans[key]

    @staticmethod
    def _pinned_layout(
        profile: Profile, info: budget.gguf_header.ModelInfo, gpus: list[gguf_plan.Gpu]
    ) -> gguf_plan.LayerPlacement:
        if not gpus:
            return gguf_plan.LayerPlacement()
        placement = profile.placement
        ngl = placement.n_gpu_layers
        layers = info.n_layer + 1 if ngl in ("all", "auto", None) else int(ngl)
        split = tuple(placement.tensor_split or ())
        return gguf_plan.LayerPlacement(layers, split, placement.n_cpu_moe or 0)

    def _placement(
        self, profile: Profile, est: gguf_plan.Estimate, gpus: tuple[int, ...] | None = None
    ) -> Placement:
        need = {d.name: d.total - d.overhead for d in est.gpus if d.total - d.overhead}
        need[CPU] = est.cpu.total
        corrected, measured = self._corrected(profile, need)
        return Placement(corrected, gpus, measured)

    def _unplaced(self, profile: Profile) -> Placement:
        try:
            size = profile.file.stat().st_size
        except OSError:
            size = 0
        return Placement({CPU: size})

    # -- what llama-server really allocated ------------------------------------------------
    def measure(
        self, profile: Profile, placement: Placement, log_text: str, pid: int | None = None
    ) -> Placement:
        """Record what llama-server reported (its buffer lines; NVML's figure for its
        process `pid` where the driver gives one) against what was estimated; returns
        the placement with the measured footprint where the server used the devices
        planned."""
        measured: Bytes = {}
        for device, parts in gguf_check.buffer_sizes(log_text).items():
            name = CPU if device == CPU else _gpu_name(device, placement.gpus)
            measured[name] = measured.get(name, 0) + sum(parts.values())
        for name, used in self._process_memory(pid).items():
            # NVML's figure also holds the CUDA context the buffer lines leave out.
            measured[name] = max(measured.get(name, 0), used)
        if not measured:
            return placement
        planned = placement.footprint
        if _gpu_total(measured) == 0 and _gpu_total(planned) > 0:
            # The server used no GPU where one was planned (a CPU build, fake GPUs): its
            # figures say nothing about the plan.
            return placement
        record = {"key": _fingerprint(profile), "estimated": planned, "measured": measured}
        with self._lock:
            self._measured[profile.id] = record
            self._save()
        return Placement(measured, placement.gpus, measured=True)

    def _process_memory(self, pid: int | None) -> Bytes:
        """GPU memory NVML (or the fake) reports for process `pid`, per GPU."""
        if pid is None or self._gpus is not None:  # GPUs given: a plan, not this machine
            return {}
        from llamaherd.gpus import gpu_source

        source = gpu_source()
        try:
            reading = source.sample()
        finally:
            source.close()
        return {
            f"GPU{gpu.get('index', i)}": int(process["used_memory"])
            for i, gpu in enumerate(reading.gpus)
            for process in gpu.get("processes") or []
            if process.get("pid") == pid and process.get("used_memory")
        }

    def measured(self, profile: Profile) -> dict | None:
        record = self._measured.get(profile.id)
        return record if record and record["key"] == _fingerprint(profile) else None

    def _corrected(self, profile: Profile, need: Bytes) -> tuple[Bytes, bool]:
        """`need` scaled by measured/estimated, GPUs and RAM apart, for this profile."""
        record = self.measured(profile)
        if record is None:
            return need, False
        gpu_ratio = _ratio(_gpu_total(record["measured"]), _gpu_total(record["estimated"]))
        cpu_ratio = _ratio(record["measured"].get(CPU, 0), record["estimated"].get(CPU, 0))
        return {d: round(n * (cpu_ratio if d == CPU else gpu_ratio)) for d, n in need.items()}, True

    def _load(self) -> dict[str, dict]:
        if self._path is None:
            return {}
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self._path is not None:
            write_text_if_changed(self._path, json.dumps(self._measured, indent=1))


def _within(placement: Placement, free: Bytes) -> Placement | None:
    fits = all(n <= free.get(device, 0) for device, n in placement.footprint.items() if n)
    return placement if fits else None


def _all_layers(info: budget.gguf_header.ModelInfo) -> gguf_plan.LayerPlacement:
    return gguf_plan.LayerPlacement(info.n_layer + 1)


def _index(gpu_name: str) -> int:
    return int(gpu_name.removeprefix("GPU").split()[0])


def _gpu_name(backend_device: str, visible: tuple[int, ...] | None) -> str:
    """llama.cpp's CUDA1 is the second GPU it was shown: map it to the machine's index."""
    digits = "".join(c for c in backend_device if c.isdigit())
    index = int(digits) if digits else 0
    if visible is not None and index < len(visible):
        index = visible[index]
    return f"GPU{index}"


def _gpu_total(footprint: Bytes) -> int:
    return sum(n for d, n in footprint.items() if d != CPU)


def _ratio(measured: int, estimated: int) -> float:
    return measured / estimated if measured and estimated else 1.0


def _fingerprint(profile: Profile) -> str:
    """Changes when the profile or its file does: a measurement then no longer holds."""
    try:
        stat = profile.file.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    text = profile.model_dump_json() + stamp
    return hashlib.sha256(text.encode()).hexdigest()[:16]

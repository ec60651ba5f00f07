"""The daemon's sampler: GPUs, host and servers once a second, plus a short history.

One asyncio task in the daemon (started and stopped by daemon._serve) samples, and
`GET /system` only reads the last sample, so any number of dashboards cost the daemon
one sample a second. The llama-servers themselves are asked only while a client reads
`GET /system` (see WATCH_WINDOW). The blocking parts (NVML, psutil) run in a worker thread so the
event loop keeps relaying tokens meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llamaherd.daemon.supervisor import State, Supervisor
from llamaherd.gpus import GpuReading, GpuSource, gpu_source
from llamaherd.monitor.server import ServerSampler, ServerTarget
from llamaherd.monitor.system import SystemSampler

log = logging.getLogger(__name__)

INTERVAL = 1.0
HISTORY = 300  # samples: five minutes at one a second, enough for sparklines
# llama-server asks whether a non-streaming client is still there only after a second
# without any task result; each /slots or /metrics answer restarts that second. So the
# servers are asked only while someone reads GET /system (within this many seconds).
WATCH_WINDOW = 10.0


@dataclass
class _Point:
    """What the history keeps of one sample (the numbers sparklines draw)."""

    t: float
    cpu_percent: float
    tokens_per_s: dict[str, float | None] = field(default_factory=dict)
    gpu_memory_used: dict[str, int | None] = field(default_factory=dict)
    gpu_utilization: dict[str, float | None] = field(default_factory=dict)


class Sampler:
    def __init__(
        self,
        supervisor: Supervisor,
        http: httpx.AsyncClient,
        gpus: GpuSource | None = None,
        *,
        interval: float = INTERVAL,
        history: int = HISTORY,
    ) -> None:
        self.supervisor = supervisor
        self.http = http
        self.gpus = gpus if gpus is not None else gpu_source()
        self.interval = interval
        self.system = SystemSampler()
        self.servers = ServerSampler()
        self.history: collections.deque[_Point] = collections.deque(maxlen=history)
        self.latest: dict[str, Any] | None = None
        self.error: str | None = None  # the last sample's failure, if it failed
        self._watched_at = -WATCH_WINDOW

    def watch(self) -> bool:
        """Note that a client reads the samples; whether one already did (else the last
        sample has no server numbers)."""
        watched = time.monotonic() - self._watched_at < WATCH_WINDOW
        self._watched_at = time.monotonic()
        return watched

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled; a failed sample is kept as
        `error` and the next one is tried, so a flaky driver never stops the daemon."""
        try:
            while True:
                began = time.monotonic()
                try:
                    await self.sample()
                    self.error = None
                except Exception as error:  # keep sampling whatever broke
                    if self.error is None:
                        log.warning("system sampler: %r", error)
                    self.error = repr(error)
                await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - began)))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.gpus.close)

    async def sample(self) -> dict[str, Any]:
        """Take one sample of everything; it becomes `latest` and joins the history."""
        at = time.time()
        models = [m for m in self.supervisor.models.values() if m.server]
        owners = {m.server.pid: m.id for m in models if m.server}
        targets = [
            ServerTarget(
                m.id, m.server.pid, m.server.url, str(m.state), m.in_flight, m.server.api_key
            )
            for m in models
            if m.server and m.state == State.READY
        ]
        if time.monotonic() - self._watched_at >= WATCH_WINDOW:
            targets = []  # nobody watches: leave llama-server alone (WATCH_WINDOW)
        models_dir = self.supervisor.config.models_dir
        (reading, system, processes), servers = await asyncio.gather(
            asyncio.to_thread(self._host, models_dir, list(owners)),
            self.servers.sample(self.http, targets, at),
        )
        gpus = _label_processes(reading, owners)
        for server in servers:
            server.update(processes.get(server["pid"], {"rss": None, "cpu_percent": None}))
            server.update(_gpu_share(gpus, server["pid"]))
        self.latest = {
            "gpus": gpus,
            "gpu_note": reading.note,
            "system": system,
            "servers": servers,
            "sampled_at": at,
        }
        self.history.append(
            _Point(
                t=at,
                cpu_percent=system["cpu_percent"],
                tokens_per_s={s["model"]: s["tokens_per_s"] for s in servers},
                gpu_memory_used={str(g["index"]): g["memory_used"] for g in gpus},
                gpu_utilization={str(g["index"]): g["utilization"] for g in gpus},
            )
        )
        return self.latest

    def _host(
        self, models_dir: Path | None, pids: list[int]
    ) -> tuple[GpuReading, dict[str, Any], dict[int, dict[str, Any]]]:
        return self.gpus.sample(), self.system.sample(models_dir), self.system.processes(pids)

    def snapshot(self, points: int | None = None) -> dict[str, Any]:
        """The body of `GET /system`: the last sample and the history (its last `points`
        samples, or all), series aligned with `history.t` (None where a model or GPU had
        no value at that time)."""
        latest = self.latest or {
            "gpus": [],
            "gpu_note": "no sample yet",
            "system": None,
            "servers": [],
            "sampled_at": None,
        }
        kept = list(self.history)[-points:] if points else list(self.history)
        return {
            "gpus": latest["gpus"],
            "gpu_note": latest["gpu_note"],
            "system": latest["system"],
            "servers": latest["servers"],
            "history": {
                "interval_s": self.interval,
                "t": [p.t for p in kept],
                "tokens_per_s": _series(kept, "tokens_per_s"),
                "gpu_memory_used": _series(kept, "gpu_memory_used"),
                "gpu_utilization": _series(kept, "gpu_utilization"),
                "cpu_percent": [p.cpu_percent for p in kept],
            },
            "sampled_at": latest["sampled_at"],
            "error": self.error,
        }


def _label_processes(reading: GpuReading, owners: dict[int, str]) -> list[dict[str, Any]]:
    """Each GPU process gets `profile`: the model whose llama-server it is, else None."""
    gpus = []
    for gpu in reading.gpus:
        processes = [{**p, "profile": owners.get(p["pid"])} for p in gpu.get("processes", [])]
        gpus.append({**gpu, "processes": processes})
    return gpus


def _gpu_share(gpus: list[dict[str, Any]], pid: int) -> dict[str, Any]:
    """Which GPUs a server's process is on, and the memory NVML says it uses on them."""
    on = [(g["index"], p) for g in gpus for p in g["processes"] if p["pid"] == pid]
    known = [p["used_memory"] for _, p in on if p["used_memory"] is not None]
    return {"gpus": [index for index, _ in on], "gpu_memory": sum(known) if known else None}


def _series(points: list[_Point], name: str) -> dict[str, list[Any]]:
    keys: dict[str, None] = {}
    for point in points:
        keys.update(dict.fromkeys(getattr(point, name)))
    return {key: [getattr(p, name).get(key) for p in points] for key in keys}

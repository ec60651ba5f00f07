"""The planner's estimate for herd.toml profiles: for the daemon and the model picker.

* `estimate_profile(profile, gpus)`: what a profile's llama-server will allocate on each
  device, for the placement the profile asks for (a profile that leaves placement to
  llama.cpp's `--fit` gets the placement `herd plan` would pick). Cached per file.
* the daemon's scheduler builds on these (daemon/memory.py).
"""

from __future__ import annotations

import threading
from typing import Any

from llamaherd.config import Profile
from llamaherd.errors import UsageError
from llamaherd.gguf import header as gguf_header
from llamaherd.gguf import plan as gguf_plan
from llamaherd.gguf import search as gguf_search

_cache: dict[tuple[str, int, int], gguf_header.ModelInfo] = {}
_cache_lock = threading.Lock()


def read_cached(profile: Profile) -> gguf_header.ModelInfo | None:
    """The profile's GGUF header (cached by path, size and mtime); None if unreadable."""
    try:
        stat = profile.file.stat()
    except OSError:
        return None
    key = (str(profile.file), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        info = gguf_header.read(profile.file)
    except UsageError:
        return None
    with _cache_lock:
        _cache[key] = info
    return info


def settings_for(profile: Profile, info: gguf_header.ModelInfo) -> gguf_plan.Settings:
    return gguf_plan.Settings(
        ctx=profile.ctx or info.context_length or 4096,
        parallel=profile.parallel,
        cache_type_k=profile.cache_type_k or "f16",
        cache_type_v=profile.cache_type_v or "f16",
        flash_attn=profile.flash_attn or "auto",
    )


def pinned(profile: Profile) -> bool:
    """The profile fixes its GPU layers itself (llama.cpp's --fit will not move them) on
    this machine's GPUs (RPC workers add devices the local GPU list does not show)."""
    placement = profile.placement
    local = not profile.rpc
    return local and placement.n_gpu_layers is not None and placement.fit is not True


def estimate_profile(profile: Profile, gpus: list[gguf_plan.Gpu]) -> gguf_plan.Estimate | None:
    info = read_cached(profile)
    if info is None:
        return None
    settings = settings_for(profile, info)
    try:
        gguf_plan.check_settings(settings)
    except UsageError:
        return None
    if profile.gpus is not None:  # the profile's own GPU selection (docker runtime)
        gpus = [g for i, g in enumerate(gpus) if i in profile.gpus]
    if not gpus:
        return gguf_plan.estimate(info, settings, gguf_plan.LayerPlacement(), [])
    if not pinned(profile):
        return gguf_search.best_plan(info, settings, gpus).estimate
    placement = profile.placement
    ngl = placement.n_gpu_layers
    layers = info.n_layer + 1 if ngl in ("all", "auto") else int(ngl or 0)
    split = tuple(placement.tensor_split or ())
    return gguf_plan.estimate(
        info, settings, gguf_plan.LayerPlacement(layers, split, placement.n_cpu_moe or 0), gpus
    )


def memory_summary(profile: Profile, gpus: list[gguf_plan.Gpu]) -> dict[str, Any] | None:
    """{"gpu": bytes on the GPUs (margin excluded), "cpu": bytes in RAM, "fits"}."""
    est = estimate_profile(profile, gpus)
    if est is None:
        return None
    return {
        "gpu": sum(d.total - d.overhead for d in est.gpus),
        "cpu": est.cpu.total,
        "fits": est.fits,
    }


def gpu_totals() -> list[gguf_plan.Gpu]:
    """This machine's GPUs with their whole memory (running models are summed here)."""
    from llamaherd.gpus import gpu_source

    source = gpu_source()
    try:
        reading = source.sample()
    finally:
        source.close()
    return [
        gguf_plan.Gpu(f"GPU{g.get('index', i)}", int(g["memory_total"]))
        for i, g in enumerate(reading.gpus)
        if g.get("memory_total")
    ]


_summaries: dict[tuple[str, str], dict[str, Any] | None] = {}


def summaries(profiles: list[Profile], gpus: list[gguf_plan.Gpu]) -> dict[str, Any]:
    """{profile id: memory_summary} for the model list and the picker; cached per
    profile and GPU set, since a placement search takes a moment on big models."""
    gpu_key = repr(gpus)
    out = {}
    for profile in profiles:
        info = read_cached(profile)  # a changed file gives a new header, hence a new key
        key = (profile.model_dump_json() + str(info and info.file_size), gpu_key)
        if key not in _summaries:
            _summaries[key] = memory_summary(profile, gpus)
        out[profile.id] = _summaries[key]
    return out


def describe(summary: dict[str, Any] | None) -> str:
    """'12.4 GiB GPU + 1.2 GiB RAM', '3.1 GiB RAM', or '—' when unknown."""
    if not summary:
        return "—"
    ram = f"{gguf_plan.format_size(summary['cpu'])} RAM"
    if summary["gpu"]:
        return f"{gguf_plan.format_size(summary['gpu'])} GPU + {ram}"
    return ram

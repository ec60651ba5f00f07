"""The placement search: the best way to put a model on the machine's GPUs.

Everything on the GPUs if it fits (one GPU, or a tensor split sized to asymmetric GPUs),
else for MoE the fewest layers whose experts go to the CPU, else for dense models the
most layers that fit; no GPU: CPU only. Each candidate is sized by gguf/plan.py's
`estimate`.
"""

from __future__ import annotations

import math

from llamaherd.gguf.header import ModelInfo
from llamaherd.gguf.plan import (
    Estimate,
    Gpu,
    LayerPlacement,
    Plan,
    Settings,
    check_settings,
    estimate,
    format_size,
    kv_cells,
    needs_flash,
)


def best_plan(info: ModelInfo, settings: Settings, gpus: list[Gpu]) -> Plan:
    """The placement a careful human would pick, with the reason."""
    check_settings(settings)
    notes = _notes(info, settings)
    all_layers = info.n_layer + 1

    def plan(est: Estimate, strategy: str, reason: str) -> Plan:
        return Plan(est, strategy, reason, settings, notes, n_layers=info.n_layer)

    if not gpus:
        est = estimate(info, settings, LayerPlacement(), [])
        return plan(est, "CPU only", "no GPU given or detected: everything runs on the CPU")

    # A: one GPU holds it all (no traffic between GPUs), the largest GPU first.
    for index in sorted(range(len(gpus)), key=lambda i: -gpus[i].memory):
        split = tuple(int(i == index) * all_layers for i in range(len(gpus)))
        alone = LayerPlacement(all_layers, split if len(gpus) > 1 else (), 0)
        est = estimate(info, settings, alone, gpus)
        if est.fits:
            return plan(est, "A", f"the whole model fits on {gpus[index].name}")

    # B: split across the GPUs.
    full = _fit_split(info, settings, gpus, n_cpu_moe=0)
    if full is not None:
        return plan(full, "B", "the whole model fits when split across the GPUs")

    if info.is_moe:
        expert_layers = sorted(
            {t.layer for t in info.tensors if t.group == "ffn_experts" and t.layer is not None}
        )
        last = (expert_layers[-1] + 1) if expert_layers else 0
        for n in range(1, last + 1):
            fitted = _fit_split(info, settings, gpus, n_cpu_moe=n)
            if fitted is not None:
                return plan(
                    fitted,
                    "C",
                    f"all layers on the GPUs with the experts of the first {n} of "
                    f"{info.n_layer} layers on the CPU (--n-cpu-moe {n})",
                )

    for ngl in range(all_layers - 1, 0, -1):
        fitted = _fit_split(info, settings, gpus, n_cpu_moe=0, n_gpu_layers=ngl)
        if fitted is not None:
            return plan(
                fitted,
                "D",
                f"{ngl} of {all_layers} layers (the output layer first) on the GPUs, "
                "the rest on the CPU",
            )
    est = estimate(info, settings, LayerPlacement(), [])
    return plan(est, "CPU only", "not even one layer fits beside the compute buffers: CPU only")


def _fit_split(
    info: ModelInfo,
    settings: Settings,
    gpus: list[Gpu],
    *,
    n_cpu_moe: int,
    n_gpu_layers: int | None = None,
) -> Estimate | None:
    """A fitting estimate with n_gpu_layers (default all) split over the GPUs, or None.

    First llama.cpp's default (layers in proportion to the GPUs' memory); else the
    contiguous split that fills each GPU in turn, expressed as per-GPU layer counts
    (which llama.cpp reads as proportions of the offloaded layers)."""
    ngl = info.n_layer + 1 if n_gpu_layers is None else n_gpu_layers
    if len(gpus) == 1:
        est = estimate(info, settings, LayerPlacement(ngl, (), n_cpu_moe), gpus)
        return est if est.fits else None

    proportional = _counts_by_memory(ngl, gpus)
    est = estimate(info, settings, LayerPlacement(ngl, tuple(proportional), n_cpu_moe), gpus)
    if est.fits:
        return est
    # Greedy fill: give each GPU as many layers as it holds, in order. For contiguous
    # splits in a fixed order this finds a fitting split whenever one exists.
    n = len(gpus)
    counts = [0] * n
    remaining = ngl
    for g in range(n - 1):
        for take in range(remaining, -1, -1):
            trial = [*counts[:g], take, *[0] * (n - g - 2), remaining - take]
            est = estimate(info, settings, LayerPlacement(ngl, tuple(trial), n_cpu_moe), gpus)
            if est.devices[g].fits:
                counts[g] = take
                break
        remaining -= counts[g]
    counts[-1] = remaining
    est = estimate(info, settings, LayerPlacement(ngl, tuple(counts), n_cpu_moe), gpus)
    return est if est.fits else None


def _counts_by_memory(ngl: int, gpus: list[Gpu]) -> list[int]:
    """Layer counts proportional to each GPU's memory, summing to ngl."""
    total = sum(g.memory for g in gpus)
    raw = [ngl * g.memory / total for g in gpus]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(len(gpus)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) >= ngl:
            break
        counts[i] += 1
    return counts


def _notes(info: ModelInfo, s: Settings) -> list[str]:
    notes = []
    if needs_flash(s):
        notes.append(f"{s.cache_type_v} V cache: flash attention must be on (-fa on)")
    if info.context_length and s.ctx > info.context_length:
        notes.append(
            f"ctx {s.ctx} exceeds the trained context {info.context_length}: "
            "quality drops past it unless RoPE scaling is set"
        )
    if info.swa_layers:
        full, swa = kv_cells(info, s)
        notes.append(
            f"{len(info.swa_layers)} of {info.n_layer} layers use a {info.sliding_window}-token "
            f"sliding window: their cache holds {swa} cells instead of {full}"
        )
    if info.recurrent_layers:
        notes.append(
            f"{len(info.recurrent_layers)} recurrent layers: a fixed state per sequence, "
            "not per token"
        )
    if info.tied_output:
        notes.append("tied embeddings: the output layer's device gets a copy of token_embd")
    return notes


def ram_notes(est: Estimate) -> list[str]:
    """A warning when the CPU's share exceeds this machine's RAM (mmap would page weights
    in from disk on every token: it runs, very slowly)."""
    import psutil

    ram = psutil.virtual_memory().total
    if est.cpu.total <= ram:
        return []
    return [
        f"the CPU part needs {format_size(est.cpu.total)} but this machine has "
        f"{format_size(ram)} of RAM: weights would be paged from disk (very slow)"
    ]

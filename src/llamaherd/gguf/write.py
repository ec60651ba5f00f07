"""Writing GGUF files: the atomic writer, and the small byte-level BPE tokenizer with a
ChatML template that the demo models (demo.py) and the synthetic ones (synth.py) carry.

What llama.cpp requires of the tokenizer: llama-vocab.cpp wants the merges list and a
pre-tokenizer name it knows, and maps every byte through GPT-2's bytes_to_unicode table,
so all 256 byte tokens must exist for any text to tokenize; the ChatML control tokens and
template make /v1/chat/completions work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf

from llamaherd import fsutil

# Qwen's minimal ChatML template. llama-server renders it with its Jinja engine.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Whole words the tokenizer knows beyond single bytes ("Ġ" is GPT-2's mark for a leading
# space). Each is built up by a chain of merges, so "Hello world" is two tokens, and they
# make the nonsense the models write look like words.
WORDS = (
    "Hello", "Ġworld", "Ġhello", "Ġthe", "Ġherd", "Ġllama", "Ġllamas", "Ġdemo", "Ġmodel",
    "Ġexpert", "Ġrandom", "Ġweights", "Ġa", "Ġis", "Ġof", "Ġand", "Ġto", "Ġin", "Ġit",
    "Ġyou", "ĠI", "Ġgraze", "Ġgrass", "Ġhill", "Ġwool", "Ġsoft", "Ġquiet", "Ġsun",
    "user", "assistant", "system",
)  # fmt: skip


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies use.

    llama.cpp maps every input byte through this table before looking tokens up, so a
    byte token must be spelled with it to be found.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _word_merges(words: tuple[str, ...]) -> list[str]:
    """Merges that build each word left to right ("H e", "He l", ...), first ones first."""
    merges: list[str] = []
    for word in words:
        for end in range(1, len(word)):
            merge = f"{word[:end]} {word[end]}"
            if merge not in merges:
                merges.append(merge)
    return merges


@dataclass(frozen=True)
class Vocab:
    """Token strings and types in id order, the merges, and the special token ids."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    endoftext_id: int
    im_start_id: int
    im_end_id: int


def build_vocab() -> Vocab:
    """256 byte tokens (id == byte value), the merged words, then the ChatML specials."""
    byte_table = bytes_to_unicode()
    tokens = [byte_table[b] for b in range(256)]
    merges = _word_merges(WORDS)
    for merge in merges:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    specials = (ENDOFTEXT, IM_START, IM_END)
    tokens.extend(specials)
    types.extend([gguf.TokenType.CONTROL] * len(specials))
    return Vocab(
        tokens=tokens,
        types=[int(t) for t in types],
        merges=merges,
        endoftext_id=tokens.index(ENDOFTEXT),
        im_start_id=tokens.index(IM_START),
        im_end_id=tokens.index(IM_END),
    )


def add_tokenizer(
    writer: gguf.GGUFWriter, vocab: Vocab, tokens: Sequence[str], types: Sequence[int]
) -> None:
    """The demo tokenizer and chat template; `tokens`/`types` are the vocab's, or those
    padded to a larger vocabulary (gguf/synth.py)."""
    writer.add_tokenizer_model("gpt2")
    # qwen2's pre-tokenizer: a GPT-2 style split that, unlike "default", leaves spaces
    # before punctuation alone when decoding, so text round-trips exactly.
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(list(tokens))
    writer.add_token_types(list(types))
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.endoftext_id)
    writer.add_eos_token_id(vocab.im_end_id)
    writer.add_eot_token_id(vocab.im_end_id)
    writer.add_pad_token_id(vocab.endoftext_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


@contextlib.contextmanager
def writing_gguf(path: Path, arch: str) -> Iterator[gguf.GGUFWriter]:
    """A GGUF writer whose file appears at `path` only once the block wrote it whole
    (written beside it, then renamed; a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsutil.temp_beside(path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch=arch)
        yield writer
        writer.close()
        os.replace(tmp, path)

"""Sampler defaults of known model families, for `herd add` when a GGUF carries none.

Each entry names where its numbers come from: the model card's "best practices" or the
generation_config.json its makers publish. The first entry whose architecture and name
pattern match wins, so specific entries (a coder variant) come before general ones.
A GGUF's own `general.sampling.*` keys always win over this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    architectures: tuple[str, ...]
    pattern: str  # regex searched in the model's general.name and file name, any case
    sampling: dict[str, float | int]
    source: str


FAMILIES: tuple[Family, ...] = (
    Family(
        "Qwen3-Coder",
        ("qwen3moe", "qwen3", "qwen3next"),
        r"coder",
        {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05},
        "https://huggingface.co/Qwen/Qwen3-Coder-30B-A3B-Instruct (Best Practices)",
    ),
    Family(
        "Qwen3-Next Instruct",
        ("qwen3next",),
        r"",
        {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0},
        "https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct (Best Practices)",
    ),
    Family(
        "Qwen3 (thinking)",
        ("qwen3", "qwen3moe"),
        r"",
        {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0},
        "https://huggingface.co/Qwen/Qwen3-8B (Best Practices, thinking mode)",
    ),
    Family(
        "GLM-4.x",
        ("glm4moe", "glm4", "deepseek2"),
        r"glm",
        {"temperature": 1.0, "top_p": 0.95},
        "https://huggingface.co/zai-org/GLM-4.7-Flash (generation defaults)",
    ),
    Family(
        "gpt-oss",
        ("gpt-oss",),
        r"",
        {"temperature": 1.0, "top_p": 1.0, "top_k": 0},
        "https://huggingface.co/openai/gpt-oss-120b (recommended sampling: temperature 1.0, "
        "top_p 1.0)",
    ),
    Family(
        "Gemma 3",
        ("gemma3", "gemma3n"),
        r"",
        {"temperature": 1.0, "top_k": 64, "top_p": 0.95, "min_p": 0.0},
        "https://huggingface.co/google/gemma-3-27b-it generation_config.json",
    ),
    Family(
        "DeepSeek-R1",
        ("deepseek2", "qwen2", "llama"),
        r"deepseek.?r1",
        {"temperature": 0.6, "top_p": 0.95},
        "https://huggingface.co/deepseek-ai/DeepSeek-R1 (Usage Recommendations)",
    ),
    Family(
        "Devstral / Mistral Small",
        ("mistral3", "llama"),
        r"devstral|mistral.?small",
        {"temperature": 0.15},
        "https://huggingface.co/mistralai/Devstral-Small-2505 (recommended temperature 0.15)",
    ),
    Family(
        "Llama 3",
        ("llama",),
        r"llama.?3",
        {"temperature": 0.6, "top_p": 0.9},
        "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct generation_config.json",
    ),
)

# general.sampling.* keys (gguf-py constants.py Keys.General.SAMPLING_*) -> herd.toml names.
GGUF_SAMPLING_KEYS = {
    "temp": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "penalty_repeat": "repeat_penalty",
}


def match(architecture: str, *names: str | None) -> Family | None:
    text = " ".join(n for n in names if n)
    for family in FAMILIES:
        if architecture in family.architectures and re.search(family.pattern, text, re.I):
            return family
    return None


def sampling_defaults(
    architecture: str, file_sampling: dict[str, Any], *names: str | None
) -> tuple[dict[str, float | int], str]:
    """(herd.toml sampling table, where it came from): the file's own keys, else the
    family table, else nothing (llama-server's defaults)."""
    from_file = {
        GGUF_SAMPLING_KEYS[k]: _rounded(v)
        for k, v in file_sampling.items()
        if k in GGUF_SAMPLING_KEYS and isinstance(v, int | float)
    }
    if from_file:
        return from_file, "the GGUF file's general.sampling keys"
    family = match(architecture, *names)
    if family:
        return dict(family.sampling), f"{family.name} defaults ({family.source})"
    return {}, "none known: llama-server's defaults apply"


def _rounded(value: float | int) -> float | int:
    # GGUF stores float32: 0.95 reads back as 0.949999988079071.
    return value if isinstance(value, int) else round(float(value), 6)

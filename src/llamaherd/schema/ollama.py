"""Ollama's API as the gateway answers it (daemon/ollama.py): the requests it reads and
the answers it sends, in the shapes of Ollama's docs/api.md. Requests keep fields herd
does not read (`extra="allow"` is not needed: unknown fields are ignored); answers are
serialised without the fields left None, as Ollama omits them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from llamaherd.schema.common import Answer


class OllamaRequest(BaseModel):
    """The fields every generating request may carry."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    model: str
    stream: bool = True
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    role: str
    content: str | None = None
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None


class OllamaChatRequest(OllamaRequest):
    messages: list[OllamaMessage] = []
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateRequest(OllamaRequest):
    prompt: str = ""
    system: str | None = None
    images: list[str] | None = None
    raw: bool = False
    suffix: str | None = None


class OllamaEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    model: str
    input: str | list[str] | None = None  # /api/embed
    prompt: str | None = None  # /api/embeddings
    keep_alive: float | str | None = None
    dimensions: int | None = None


class OllamaShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    model: str | None = None
    name: str | None = None  # the older field


class OllamaVersion(Answer):
    version: str


class OllamaDetails(Answer):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] = []
    parameter_size: str = ""
    quantization_level: str = ""


class OllamaTag(Answer):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: OllamaDetails


class OllamaTags(Answer):
    models: list[OllamaTag]


class OllamaRunning(Answer):
    name: str
    model: str
    size: int
    digest: str
    details: OllamaDetails
    expires_at: str
    size_vram: int
    context_length: int | None = None


class OllamaPs(Answer):
    models: list[OllamaRunning]


class OllamaShow(Answer):
    modelfile: str
    parameters: str
    template: str
    details: OllamaDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class OllamaStats(Answer):
    """The figures of a final chunk (durations in nanoseconds)."""

    model: str
    created_at: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class OllamaChatChunk(OllamaStats):
    message: OllamaMessage


class OllamaGenerateChunk(OllamaStats):
    response: str
    thinking: str | None = None


class OllamaEmbed(Answer):
    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class OllamaEmbedding(Answer):
    embedding: list[float]


class OllamaError(Answer):
    error: str

"""Ollama's requests as llama-server's OpenAI ones, and llama-server's answers back in
Ollama's shapes (docs/api.md of ollama/ollama): pure translations, no I/O. The endpoints
are daemon/ollama.py's.

- `options` become llama-server's sampling fields; what is fixed when a model loads
  (num_ctx, num_gpu, num_thread ...) is the profile's, and ignored with a note.
- `format: "json"` is `response_format: {"type": "json_object"}`, a JSON schema is
  `{"type": "json_schema", ...}`; images become `image_url` parts (data URLs).
- llama-server's `timings` become Ollama's counts and durations (nanoseconds).
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from llamaherd.schema.ollama import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage

# Ollama option -> llama-server field (same meaning, its name).
SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "num_keep": "n_keep",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}
PROJECTOR_FLAGS = ("--mmproj", "-mm", "--mmproj-url", "-mmu")
FINISH = {"length": "length"}  # anything else (stop, tool_calls) is Ollama's "stop"


class ShapeError(ValueError):
    """A request herd cannot translate (400, with the reason)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def iso_at(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


def sampling(options: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """llama-server's fields for Ollama's `options`, and the options ignored."""
    fields: dict[str, Any] = {}
    ignored = []
    for name, value in (options or {}).items():
        if name == "num_predict":
            if isinstance(value, int) and value >= 0:  # -1 (no limit), -2 (fill the context)
                fields["max_tokens"] = value
        elif name in SAMPLING:
            fields[SAMPLING[name]] = value
        else:
            ignored.append(name)
    return fields, sorted(ignored)


def response_format(fmt: str | dict[str, Any] | None) -> dict[str, Any]:
    if fmt in (None, ""):
        return {}
    if fmt == "json":
        return {"response_format": {"type": "json_object"}}
    if isinstance(fmt, dict):
        schema = {"name": "format", "schema": fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise ShapeError(f'format: {fmt!r} is neither "json" nor a JSON schema (an object)')


def has_projector(args: list[str]) -> bool:
    return any(a in PROJECTOR_FLAGS or a.startswith("--mmproj=") for a in args)


def check_images(model: str, args: list[str], images: list[str] | None) -> None:
    if images and not has_projector(args):
        raise ShapeError(
            f"model '{model}' cannot read images: its profile has no vision projector; "
            "add its mmproj GGUF to the profile's args in herd.toml "
            '(args = ["--mmproj", "mmproj.gguf"])'
        )


def _content(text: str | None, images: list[str] | None) -> str | list[dict[str, Any]]:
    if not images:
        return text or ""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text or ""}] if text else []
    for image in images:
        url = image if image.startswith("data:") else f"data:image/png;base64,{image}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _message(message: OllamaMessage) -> dict[str, Any]:
    content = _content(message.content, message.images)
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": call.get("function", {}).get("name", ""),
                    "arguments": json.dumps(call.get("function", {}).get("arguments", {})),
                },
            }
            for i, call in enumerate(message.tool_calls)
        ]
    if message.tool_name:
        out["name"] = message.tool_name
    return out


def _common(request: OllamaChatRequest | OllamaGenerateRequest) -> tuple[dict[str, Any], list[str]]:
    fields, ignored = sampling(request.options)
    body: dict[str, Any] = {"stream": request.stream, **fields, **response_format(request.format)}
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.think is not None:  # thinking models' templates read enable_thinking
        body["chat_template_kwargs"] = {"enable_thinking": request.think is not False}
    return body, ignored


def chat_body(request: OllamaChatRequest, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The /v1/chat/completions body for an /api/chat request, and the options ignored."""
    for message in request.messages:
        check_images(request.model, args, message.images)
    body, ignored = _common(request)
    body["messages"] = [_message(m) for m in request.messages]
    if request.tools:
        body["tools"] = request.tools
    return body, ignored


def generate_body(
    request: OllamaGenerateRequest, args: list[str]
) -> tuple[str, dict[str, Any], list[str]]:
    """The llama-server path and body for an /api/generate request: a chat with the
    prompt as the user's message (the model's template applies), or with `raw` the
    prompt as it is (/v1/completions)."""
    if request.suffix:
        raise ShapeError(
            "suffix (fill-in-the-middle) is not translated; use llama-server's /infill "
            "through herd's gateway"
        )
    check_images(request.model, args, request.images)
    body, ignored = _common(request)
    if request.raw:
        if request.images:
            raise ShapeError("images need the model's chat template: not with raw")
        return "/v1/completions", {**body, "prompt": request.prompt}, ignored
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": _content(request.prompt, request.images)})
    return "/v1/chat/completions", {**body, "messages": messages}, ignored


def stats(data: dict[str, Any], received: float, waited: float) -> dict[str, Any]:
    """Ollama's counts and durations from llama-server's `usage` and `timings`."""
    usage = data.get("usage") or {}
    timings = data.get("timings") or {}
    figures = {
        "total_duration": int((time.monotonic() - received) * 1e9),
        "load_duration": int(waited * 1e9),
        "prompt_eval_count": timings.get("prompt_n", usage.get("prompt_tokens")),
        "prompt_eval_duration": _ns(timings.get("prompt_ms")),
        "eval_count": timings.get("predicted_n", usage.get("completion_tokens")),
        "eval_duration": _ns(timings.get("predicted_ms")),
    }
    return {k: v for k, v in figures.items() if v is not None}


def _ns(ms: object) -> int | None:
    return int(ms * 1e6) if isinstance(ms, int | float) else None


def done_reason(finish: str | None) -> str:
    return FINISH.get(finish or "", "stop")


def tool_calls(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """OpenAI's tool calls (arguments as JSON text) as Ollama's (arguments as an object)."""
    if not calls:
        return None
    out = []
    for call in calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"arguments": function.get("arguments")}  # not JSON: kept as text
        out.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return out


def parameter_size(n_params: int) -> str:
    """ "7.6B", "494M" as Ollama writes a model's size."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n_params >= scale:
            return f"{n_params / scale:.1f}{unit}".replace(".0" + unit, unit)
    return str(n_params)


def truncate(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` values, normalised again (as Ollama's `dimensions`)."""
    if not dimensions or dimensions >= len(vector):
        return vector
    kept = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in kept)) or 1.0
    return [v / norm for v in kept]

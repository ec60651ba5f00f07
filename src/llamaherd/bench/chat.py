"""One streamed chat completion (or a raw-prompt completion, for base models), timed: the
request every benchmark is made of.

Streaming is used even where only the answer matters (HumanEval+), so there is one code
path: the client clocks each token as it arrives (TTFT, inter-token latency), and
llama-server's last chunk carries its own `timings` (prompt and generation tokens/s,
measured inside the server, free of network and client noise).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from llamaherd.bench.target import Target
from llamaherd.errors import HerdError


@dataclass
class Reply:
    content: str = ""
    reasoning: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    """Request sent -> first generated token (answer or reasoning)."""
    token_times: list[float] = field(default_factory=list)
    """Arrival of every chunk that carried generated text, seconds after the request."""
    total_s: float = 0.0
    timings: dict[str, Any] | None = None
    """llama-server's own figures (prompt_n, prompt_per_second, predicted_per_second ...)."""
    finish_reason: str | None = None

    @property
    def generated(self) -> int:
        """Tokens generated: the server's count, else the chunks seen."""
        if self.timings and self.timings.get("predicted_n") is not None:
            return int(self.timings["predicted_n"])
        if self.completion_tokens is not None:
            return self.completion_tokens
        return len(self.token_times)

    @property
    def prompt_processed(self) -> int | None:
        if self.timings and self.timings.get("prompt_n") is not None:
            return int(self.timings["prompt_n"])
        return self.prompt_tokens


async def stream_chat(
    http: httpx.AsyncClient,
    target: Target,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    extra: dict[str, Any] | None = None,
) -> Reply:
    """Greedy (temperature 0) streamed chat completion; HerdError on any failure."""
    body = _greedy(target, max_tokens, extra, messages=messages)
    return await _stream(http, target, "/chat/completions", body)


async def stream_completion(
    http: httpx.AsyncClient,
    target: Target,
    prompt: str,
    *,
    max_tokens: int,
    stop: list[str],
    extra: dict[str, Any] | None = None,
) -> Reply:
    """Greedy streamed /v1/completions of `prompt` as it is (no chat template), ending at
    any of `stop`; HerdError on any failure."""
    body = _greedy(target, max_tokens, extra, prompt=prompt, stop=stop)
    return await _stream(http, target, "/completions", body)


def _greedy(
    target: Target, max_tokens: int, extra: dict[str, Any] | None, **fields: Any
) -> dict[str, Any]:
    return {
        "model": target.model,
        **fields,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }


async def _stream(http: httpx.AsyncClient, target: Target, path: str, body: dict) -> Reply:
    url = f"{target.base_url}{path}"
    request = http.build_request("POST", url, json=body, headers=target.headers)
    reply = Reply()
    content: list[str] = []
    reasoning: list[str] = []
    try:
        start = time.perf_counter()
        try:
            response = await http.send(request, stream=True)
        except httpx.RemoteProtocolError:
            # A kept-alive connection the server had closed (llama-server drops idle
            # ones), before any response byte: once more on a fresh one, as the gateway does.
            start = time.perf_counter()
            response = await http.send(request, stream=True)
        try:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise HerdError(f"{url}: HTTP {response.status_code}: {text[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now = time.perf_counter() - start
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise HerdError(f"{url}: {chunk['error']}")
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    # A completion chunk carries its text in `text`, a chat one in `delta`.
                    piece = delta.get("content") or choice.get("text") or ""
                    thought = delta.get("reasoning_content") or ""
                    if piece or thought:
                        reply.token_times.append(now)
                        content.append(piece)
                        reasoning.append(thought)
                    reply.finish_reason = choice.get("finish_reason") or reply.finish_reason
                usage = chunk.get("usage")
                if usage:
                    reply.prompt_tokens = usage.get("prompt_tokens")
                    reply.completion_tokens = usage.get("completion_tokens")
                if chunk.get("timings"):
                    reply.timings = chunk["timings"]
        finally:
            await response.aclose()
    except httpx.HTTPError as error:
        raise HerdError(f"{url}: {error!r}") from None
    reply.total_s = time.perf_counter() - start
    reply.content = "".join(content)
    reply.reasoning = "".join(reasoning)
    reply.ttft_s = reply.token_times[0] if reply.token_times else None
    return reply

"""A gateway request's prompt as llama-server's tokens, for the lazy restore of saved
prompt caches (daemon/kvkeep.py, docs/kv-keep.md).

llama-server itself does the work, so the tokens are the ones it will process: a chat is
rendered by `POST /apply-template` (the body as the client sent it), and the text then
tokenized by `POST /tokenize` the way a completion's prompt is (special tokens added and
parsed). An Anthropic request is first put in OpenAI's shape as far as its prefix goes:
the system prompt, the tools and the plain text messages before the first tool call,
image or thinking block, following llama-server's own conversion
(tools/server/server-chat.cpp, server_chat_convert_anthropic_to_oai). Only a shared
prefix matters, so where the rest of the conversation is cut off costs nothing.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

COMPLETIONS = {"/completion", "/completions", "/v1/completions"}
CHATS = {"/chat/completions", "/v1/chat/completions"}
ANTHROPIC = "/v1/messages"
BILLING = "x-anthropic-billing-header:"


def prompt_of(target: str, body: bytes) -> str | dict | None:
    """A completion's prompt text, a chat body to render, or None: no prompt to match
    (another path, no JSON, a prompt of token ids or several prompts)."""
    path = target.split("?", 1)[0]
    if path not in COMPLETIONS and path not in CHATS and path != ANTHROPIC:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if path in COMPLETIONS:
        prompt = data.get("prompt")
        return prompt if isinstance(prompt, str) and prompt else None
    if not isinstance(data.get("messages"), list):
        return None
    return _openai_prefix(data) if path == ANTHROPIC else data


async def tokens_of(http: httpx.AsyncClient, prompt: str | dict) -> list[int]:
    """The tokens llama-server makes of `prompt` (raises on any error)."""
    if isinstance(prompt, dict):
        rendered = await http.post("/apply-template", json=prompt)
        rendered.raise_for_status()
        prompt = rendered.json()["prompt"]
    tokenized = await http.post(
        "/tokenize", json={"content": prompt, "add_special": True, "parse_special": True}
    )
    tokenized.raise_for_status()
    return [int(token) for token in tokenized.json()["tokens"]]


def _openai_prefix(body: dict) -> dict:
    """An Anthropic messages body as the OpenAI chat body llama-server makes of it, up to
    the first message herd does not convert."""
    messages: list[Any] = []
    system = body.get("system")
    if isinstance(system, str):
        messages.append({"role": "system", "content": _unbilled(system)})
    elif isinstance(system, list):
        texts = [_unbilled(block.get("text", "")) for block in system if _is_text(block)]
        messages.append({"role": "system", "content": "".join(texts)})
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            messages.append(message)
        elif isinstance(content, list) and content and all(map(_is_text, content)):
            messages.append({"role": message.get("role"), "content": content})
        else:
            break  # tool calls and results, images, thinking: the prefix ends here
    converted: dict[str, Any] = {"messages": messages}
    if isinstance(body.get("tools"), list):
        converted["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.get("name", ""),
                    "description": tool.get("description", ""),
                    "parameters": tool.get("input_schema", {}),
                },
            }
            for tool in body["tools"]
            if isinstance(tool, dict)
        ]
    if "chat_template_kwargs" in body:
        converted["chat_template_kwargs"] = body["chat_template_kwargs"]
    return converted


def _is_text(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") == "text"


def _unbilled(text: str) -> str:
    """Claude Code's billing header with its per-request hash blanked, as llama-server
    does (else no two of its system prompts would share a prefix)."""
    if not text.startswith(BILLING):
        return text
    at = text.find("cch=", len(BILLING))
    if at < 0 or text[at + 9 : at + 10] != ";":
        return text
    return text[: at + 4] + "fffff" + text[at + 9 :]

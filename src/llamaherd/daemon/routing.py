"""Which local model answers a request that names `auto` (what `herd claude --route` sets).

Claude Code sends every request with one of the model names it was given; with routing
those are `auto` (main work) and `auto-haiku` (its background calls: titles, summaries,
quick checks). The gateway then picks a profile from the request itself, by the rules of
`[claude.route]`, first match wins:

1. a prompt longer than `long_context_tokens` (estimated) -> `long_context`, by default
   the profile with the largest ctx: a prompt that does not fit anywhere else must go
   there whatever else it asks for;
2. a haiku-class request -> `small`;
3. extended thinking on -> `thinking`;
4. anything else, and any rule whose profile is unset -> the model running now.

Routing is opt-in: requests naming a profile, or any other model name, are untouched,
and a profile called `auto` wins over the rule.
"""

from __future__ import annotations

import json
from typing import TypeGuard

from llamaherd.config import Config

AUTO = "auto"
AUTO_HAIKU = "auto-haiku"
NAMES = (AUTO, AUTO_HAIKU)
BYTES_PER_TOKEN = 4
"""A rough, tokenizer-free estimate: JSON-wrapped English and code run about 4 bytes a
token. Good enough to tell a 2k prompt from a 60k one, which is all the rule needs."""


def is_auto(name: str | None) -> TypeGuard[str]:
    return name in NAMES


def choose(requested: str, body: bytes, config: Config) -> str | None:
    """The profile id for a request naming `auto`/`auto-haiku`; None: the current model."""
    rules = config.claude.route
    request = _json(body)
    if len(body) / BYTES_PER_TOKEN > rules.long_context_tokens:
        return rules.long_context or largest_context(config)
    if requested == AUTO_HAIKU:
        return rules.small
    if _thinking(request):
        return rules.thinking
    return None


def largest_context(config: Config) -> str | None:
    """The profile with the largest configured ctx (ctx = 0, the model's own, is unknown
    here and not counted)."""
    sized = [p for p in config.models.values() if p.ctx]
    return max(sized, key=lambda p: p.ctx or 0).id if sized else None


def _thinking(request: dict) -> bool:
    thinking = request.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

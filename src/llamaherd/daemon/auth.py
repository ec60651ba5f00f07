"""The API key check shared by the gateway and the management API."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def key_matches(headers: Mapping[str, str], expected: str) -> bool:
    """Accept `Authorization: Bearer KEY` (OpenAI style) or `x-api-key: KEY` (Anthropic).

    The comparison takes the same time whatever the key, so it leaks nothing.
    """
    given = headers.get("x-api-key") or ""
    authorization = headers.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    return hmac.compare_digest(given.encode(), expected.encode())

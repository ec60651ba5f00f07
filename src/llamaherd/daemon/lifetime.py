"""How long a model stays loaded after a request: Ollama's `keep_alive` and LM Studio's
`ttl` in a request body, as seconds. The supervisor keeps the last request's value on the
model (`Model.keep_alive`), and `scheduler.expired` unloads by it (daemon/requests.py).

- a number: seconds (`0`: unloaded right after the answer; negative: never);
- a string: a Go duration as Ollama parses it ("5m", "1h30m", "300ms", "-1m"), or a bare
  number of seconds ("600").
"""

from __future__ import annotations

import json
import math
import re

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
HINT = 'seconds (300), a duration ("5m", "1h") or -1 to keep the model loaded'


class LifetimeError(ValueError):
    """A keep_alive or ttl that is not a duration (a 400 for the request)."""


def parse(value: object, field: str = "keep_alive") -> float:
    """Seconds the model stays after the request; math.inf: until stopped or evicted."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise LifetimeError(f"{field}: {value!r} is not a duration; use {HINT}")
    if isinstance(value, str):
        value = _duration(value.strip(), field)
    seconds = float(value)
    if math.isnan(seconds):
        raise LifetimeError(f"{field}: NaN is not a duration; use {HINT}")
    return math.inf if seconds < 0 else seconds


def requested(data: object) -> float | None:
    """The lifetime a JSON request body asks for (`keep_alive`, else `ttl`); None: none."""
    if not isinstance(data, dict):
        return None
    for field in ("keep_alive", "ttl"):
        if data.get(field) is not None:
            return parse(data[field], field)
    return None


def _duration(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise LifetimeError(f"{field}: {text!r} is not a duration; use {HINT}")
    return sign * sum(float(n) * UNITS[u] for n, u in parts)


def requested_in(body: bytes) -> float | None:
    """`requested` for a raw request body; most carry neither field, and are not parsed
    (the gateway parsed it once already for `model`)."""
    if b'"keep_alive"' not in body and b'"ttl"' not in body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: llama-server answers it
    return requested(data)

"""GET /activity, /activity/stream and /activity/{id}/capture: one record per gateway
request (daemon/activity.py writes them; docs/activity.md)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from llamaherd.schema.common import Answer


class ActivityRecord(Answer):
    """One request through the gateway. Token counts and speeds are llama-server's own
    (`usage` and `timings` of its answer); null where the answer carried none (an error,
    a client that left first, a path that generates nothing)."""

    id: int
    at: float
    """Unix time the request arrived."""
    client: str | None = None
    """The client's address."""
    method: str
    endpoint: str
    """The path asked for, e.g. /v1/chat/completions."""
    requested: str | None = None
    """The `model` the request named (null: none named)."""
    model: str | None = None
    """The profile that answered (null: none did)."""
    status: int | None = None
    """The HTTP status sent; null when the client left before any answer started."""
    stream: bool = False
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    """Prompt tokens taken from llama-server's cache (part of prompt_tokens)."""
    generated_tokens: int | None = None
    wait_s: float | None = None
    """Seconds it waited for its model to start (a swap, the queue); 0 when it was ready."""
    ttft_s: float | None = None
    """Seconds from arrival to the first response byte (for a stream: the first token)."""
    prompt_tps: float | None = None
    generation_tps: float | None = None
    duration_s: float
    cancelled: bool = False
    """The client left before the answer was complete."""
    captured: bool = False
    """Its bodies are in the capture buffer ([server] capture)."""


class ActivityPage(Answer):
    """Records newest first, at most `limit`; `next_before` pages on (pass it as
    `before`), null at the end."""

    records: list[ActivityRecord]
    next_before: int | None = None


class Capture(Answer):
    """A request and its response as the gateway saw them, bodies cut at `limit_bytes`;
    Authorization, X-Api-Key, Cookie and Proxy-Authorization are never kept."""

    id: int
    request_headers: dict[str, str]
    request_body: str
    request_truncated: bool = False
    response_headers: dict[str, str] = {}
    response_body: str = ""
    response_truncated: bool = False
    limit_bytes: int


# -- export: `herd activity --csv/--markdown`, GET /activity?format= -------------------
EXPORT_COLUMNS = tuple(ActivityRecord.model_fields)


def to_csv(records: list[ActivityRecord]) -> str:
    """One header line, then a line per record (time as ISO 8601 UTC)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for record in records:
        writer.writerow(_cells(record))
    return out.getvalue()


def to_markdown(records: list[ActivityRecord]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(EXPORT_COLUMNS) + " |",
        "|" + "---|" * len(EXPORT_COLUMNS),
    ]
    for record in records:
        cells = [cell.replace("|", "\\|") for cell in _cells(record)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cells(record: ActivityRecord) -> list[str]:
    values = record.model_dump()
    values["at"] = datetime.fromtimestamp(record.at, UTC).isoformat(timespec="milliseconds")
    return ["" if values[name] is None else str(values[name]) for name in EXPORT_COLUMNS]

"""The activity log: one record per gateway request (who, which model, status, tokens,
waits, speeds), kept in SQLite in the state dir, and optionally the last requests'
bodies in memory ([server] capture).

The request path only fills an `Entry` and hands it to a queue; one writer thread
inserts in batches and applies retention ([server] activity_days, activity_rows), so a
slow or failing disk never delays or breaks a request: a record that cannot be written is
lost, and the daemon's log says so. Token counts and speeds are llama-server's own
(`usage` and `timings` in its answer; in a stream, in its last chunks).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import Message, Scope, Send

from llamaherd import schema
from llamaherd.config import ServerSettings

log = logging.getLogger(__name__)

DB_NAME = "activity.sqlite"
PENDING_MAX = 10_000  # records waiting for the writer; past it new ones are dropped
BATCH_MAX = 500
CAPTURE_LIMIT = 256 * 1024  # bytes kept of each captured body
USAGE_BODY_LIMIT = 8 * 1024 * 1024  # a non-streamed answer larger than this is not parsed
USAGE_LINE_LIMIT = 1024 * 1024  # a stream line longer than this is not parsed
FAILURE_LOG_EVERY_S = 60.0
FOLLOW_QUEUE = 1000
# Never kept in a capture: they carry credentials.
SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}

COLUMNS = (
    "id",
    "at",
    "client",
    "method",
    "endpoint",
    "requested",
    "model",
    "status",
    "stream",
    "prompt_tokens",
    "cached_tokens",
    "generated_tokens",
    "wait_s",
    "ttft_s",
    "prompt_tps",
    "generation_tps",
    "duration_s",
    "cancelled",
    "captured",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, client TEXT, method TEXT NOT NULL,
    endpoint TEXT NOT NULL, requested TEXT, model TEXT, status INTEGER,
    stream INTEGER NOT NULL, prompt_tokens INTEGER, cached_tokens INTEGER,
    generated_tokens INTEGER, wait_s REAL, ttft_s REAL, prompt_tps REAL,
    generation_tps REAL, duration_s REAL NOT NULL, cancelled INTEGER NOT NULL,
    captured INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_at ON activity (at);
CREATE INDEX IF NOT EXISTS activity_model ON activity (model, id);
"""
INSERT = (
    f"INSERT OR REPLACE INTO activity ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)


@dataclass
class Usage:
    """llama-server's figures for one answer, read from its body as it passes."""

    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    generated_tokens: int | None = None
    prompt_tps: float | None = None
    generation_tps: float | None = None
    stream: bool = False
    _pending: bytearray = field(default_factory=bytearray)
    _whole: bool = True  # a non-streamed body still under USAGE_BODY_LIMIT

    def feed(self, chunk: bytes) -> None:
        if not self.stream:
            if self._whole:
                self._pending += chunk
                self._whole = len(self._pending) <= USAGE_BODY_LIMIT
            return
        *lines, rest = (bytes(self._pending) + chunk).split(b"\n")
        self._pending = bytearray(rest if len(rest) <= USAGE_LINE_LIMIT else b"")
        for line in lines:
            # Only the chunks that carry figures are parsed, not every token's.
            if line.startswith(b"data:") and (b'"usage"' in line or b'"timings"' in line):
                self._read(line[5:])

    def finish(self) -> None:
        if not self.stream and self._whole and self._pending:
            self._read(bytes(self._pending))
        self._pending = bytearray()

    def _read(self, text: bytes) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict):
            self.record(data)

    def record(self, data: dict[str, Any]) -> None:
        """The figures of one answer (or chunk) of llama-server's, parsed; the gateway
        calls it for the answers it translates (the Ollama API)."""
        message = data.get("message")  # Anthropic's message_start
        inner = message.get("usage") if isinstance(message, dict) else None
        for usage in (data.get("usage"), inner):
            if isinstance(usage, dict):
                self._read_usage(usage)
        timings = data.get("timings")
        if isinstance(timings, dict):
            self._read_timings(timings)

    def _read_usage(self, usage: dict[str, Any]) -> None:
        """OpenAI (`prompt_tokens`, `completion_tokens`) or Anthropic (`input_tokens`,
        `output_tokens`); the later chunk's numbers win."""
        prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        generated = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        details = usage.get("prompt_tokens_details")
        cached = _int(
            details.get("cached_tokens")
            if isinstance(details, dict)
            else usage.get("cache_read_input_tokens")
        )
        self.prompt_tokens = prompt if prompt is not None else self.prompt_tokens
        self.generated_tokens = generated if generated is not None else self.generated_tokens
        self.cached_tokens = cached if cached is not None else self.cached_tokens

    def _read_timings(self, timings: dict[str, Any]) -> None:
        """llama-server's `timings`: counts where `usage` gave none (a stream without
        include_usage), and the speeds measured inside the server."""
        cache_n, prompt_n = _int(timings.get("cache_n")), _int(timings.get("prompt_n"))
        if self.prompt_tokens is None and prompt_n is not None:
            self.prompt_tokens = prompt_n + (cache_n or 0)
        if self.cached_tokens is None:
            self.cached_tokens = cache_n
        if self.generated_tokens is None:
            self.generated_tokens = _int(timings.get("predicted_n"))
        self.prompt_tps = _float(timings.get("prompt_per_second"), self.prompt_tps)
        self.generation_tps = _float(timings.get("predicted_per_second"), self.generation_tps)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object, default: float | None) -> float | None:
    return round(float(value), 2) if isinstance(value, int | float) else default


@dataclass
class Capture:
    limit: int
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    request_size: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytearray = field(default_factory=bytearray)
    response_size: int = 0

    def answer(self, record_id: int) -> schema.Capture:
        def text(body: bytes) -> str:
            return body.decode("utf-8", errors="replace")

        return schema.Capture(
            id=record_id,
            request_headers=self.request_headers,
            request_body=text(self.request_body),
            request_truncated=self.request_size > self.limit,
            response_headers=self.response_headers,
            response_body=text(bytes(self.response_body)),
            response_truncated=self.response_size > self.limit,
            limit_bytes=self.limit,
        )


def _kept_headers(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1").lower()
        if name not in SECRET_HEADERS:
            kept[name] = raw_value.decode("latin-1")
    return kept


@dataclass
class Entry:
    """One request while the gateway answers it; the gateway fills in what it learns."""

    id: int
    at: float
    began: float
    client: str | None
    method: str
    endpoint: str
    requested: str | None = None
    model: str | None = None
    status: int | None = None
    wait_s: float | None = None
    first_byte: float | None = None
    cancelled: bool = False
    usage: Usage = field(default_factory=Usage)
    capture: Capture | None = None
    duration_s: float = 0.0

    def request_body(self, scope: Scope, body: bytes) -> None:
        if self.capture is not None:
            self.capture.request_headers = _kept_headers(scope.get("headers", []))
            self.capture.request_body = body[: self.capture.limit]
            self.capture.request_size = len(body)

    def watch(self, send: Send) -> Send:
        """`send`, noting the status, the first byte and the figures on the way."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.body":
                if body := message.get("body", b""):
                    self.first_byte = self.first_byte or time.monotonic()
                    self.usage.feed(body)
                    if self.capture is not None:
                        self._capture_response(body)
            elif message["type"] == "http.response.start":
                self.status = message["status"]
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name.lower() == b"content-type":
                        self.usage.stream = value.startswith(b"text/event-stream")
                if self.capture is not None:
                    self.capture.response_headers = _kept_headers(headers)
            await send(message)

        return watched

    def _capture_response(self, body: bytes) -> None:
        assert self.capture is not None
        room = self.capture.limit - len(self.capture.response_body)
        if room > 0:
            self.capture.response_body += body[:room]
        self.capture.response_size += len(body)

    def row(self) -> tuple[Any, ...]:
        usage = self.usage
        ttft = self.first_byte - self.began if self.first_byte else None
        return (
            self.id,
            self.at,
            self.client,
            self.method,
            self.endpoint,
            self.requested,
            self.model,
            self.status,
            usage.stream,
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.generated_tokens,
            _round(self.wait_s),
            _round(ttft),
            usage.prompt_tps,
            usage.generation_tps,
            round(self.duration_s, 4),
            self.cancelled,
            self.capture is not None,
        )


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def record_of(row: tuple[Any, ...]) -> schema.ActivityRecord:
    return schema.ActivityRecord.model_validate(dict(zip(COLUMNS, row, strict=True)))


class ActivityLog:
    """The daemon's activity log: `begin` and `finish` on the request path (memory only),
    `page` and `capture` for the API, `subscribe` for followers."""

    def __init__(self, path: Path, settings: Callable[[], ServerSettings]) -> None:
        self.path = path
        self.settings = settings
        self.dropped = 0  # records lost: the queue was full or the disk failed
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(PENDING_MAX)
        self._captures: collections.OrderedDict[int, Capture] = collections.OrderedDict()
        self._followers: set[asyncio.Queue[dict]] = set()
        self._ids = itertools.count(self._last_id() + 1)
        self._last_failure_log = 0.0
        self._writer = threading.Thread(target=self._write_forever, name="activity", daemon=True)
        self._writer.start()

    # -- the request path ------------------------------------------------------------
    def begin(self, scope: Scope) -> Entry:
        client = scope.get("client")
        capture = self.settings().capture
        return Entry(
            id=next(self._ids),
            at=time.time(),
            began=time.monotonic(),
            client=client[0] if client else None,
            method=scope["method"],
            endpoint=scope["path"],
            capture=Capture(CAPTURE_LIMIT) if capture else None,
        )

    def finish(self, entry: Entry) -> None:
        entry.duration_s = time.monotonic() - entry.began
        entry.usage.finish()
        row = entry.row()
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
        if entry.capture is not None:
            self._keep_capture(entry.id, entry.capture)
        if self._followers:
            event = {"type": "activity", **record_of(row).model_dump()}
            for follower in self._followers:
                if follower.full():
                    follower.get_nowait()  # a slow follower loses its oldest
                follower.put_nowait(event)

    def _keep_capture(self, record_id: int, capture: Capture) -> None:
        self._captures[record_id] = capture
        while len(self._captures) > self.settings().capture:
            self._captures.popitem(last=False)

    # -- readers ---------------------------------------------------------------------
    def capture(self, record_id: int) -> schema.Capture | None:
        kept = self._captures.get(record_id)
        return kept.answer(record_id) if kept else None

    def page(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> schema.ActivityPage:
        """Records newest first (with `after`: the oldest after it first, for followers).
        `status`: a code (`200`), a class (`4xx`) or `error` (400 and up, or none sent).
        Raises sqlite3.Error when the file cannot be read."""
        where, args = _filters(model, status, since, until, before, after)
        order = "ASC" if after is not None else "DESC"
        sql = f"SELECT {', '.join(COLUMNS)} FROM activity {where} ORDER BY id {order} LIMIT ?"
        with self._connect() as db:
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        records = [record_of(row) for row in rows[:limit]]
        more = len(rows) > limit and after is None
        return schema.ActivityPage(records=records, next_before=records[-1].id if more else None)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict]]:
        follower: asyncio.Queue[dict] = asyncio.Queue(FOLLOW_QUEUE)
        self._followers.add(follower)
        try:
            yield follower
        finally:
            self._followers.discard(follower)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._writer.join(timeout)

    # -- the writer thread -----------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers and the writer pass each other
            db.executescript(SCHEMA)
            with db:
                yield db
        finally:
            db.close()

    def _last_id(self) -> int:
        """Ids go on from the file's last, so they stay unique across daemon runs."""
        try:
            with self._connect() as db:
                return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()[0])
        except sqlite3.Error as error:
            self._failed(f"cannot read {self.path}: {error}", force=True)
            return 0

    def _write_forever(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < BATCH_MAX:
                    batch.append(self._queue.get_nowait())
            done = None in batch
            rows = [row for row in batch if row is not None]
            if rows:
                self._write(rows)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        settings = self.settings()
        try:
            with self._connect() as db:
                db.executemany(INSERT, rows)
                # Retention: ids only grow, so the newest `activity_rows` are an id range.
                oldest_kept = rows[-1][0] - settings.activity_rows
                db.execute("DELETE FROM activity WHERE id <= ?", (oldest_kept,))
                db.execute(
                    "DELETE FROM activity WHERE at < ?",
                    (time.time() - settings.activity_days * 86400,),
                )
        except (sqlite3.Error, OSError) as error:
            self.dropped += len(rows)
            self._failed(f"{len(rows)} activity record(s) not written to {self.path}: {error}")

    def _failed(self, message: str, force: bool = False) -> None:
        """Warn, at most once a minute: a broken disk would otherwise fill the log."""
        now = time.monotonic()
        if force or now - self._last_failure_log >= FAILURE_LOG_EVERY_S:
            self._last_failure_log = now
            log.warning("%s (%d lost so far)", message, self.dropped)


def _filters(
    model: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    before: int | None,
    after: int | None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if model:
        clauses.append("(model = ? OR requested = ?)")
        args += [model, model]
    if status:
        clause, values = _status_filter(status)
        clauses.append(clause)
        args += values
    for clause, value in (
        ("at >= ?", since),
        ("at < ?", until),
        ("id < ?", before),
        ("id > ?", after),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _status_filter(status: str) -> tuple[str, list[Any]]:
    """`200`, `4xx` or `error`; ValueError for anything else."""
    if status == "error":
        return "(status IS NULL OR status >= 400)", []
    if len(status) == 3 and status[0] in "12345" and status[1:] == "xx":
        low = int(status[0]) * 100
        return "status >= ? AND status < ?", [low, low + 100]
    if status.isdigit():
        return "status = ?", [int(status)]
    raise ValueError(f"status '{status}': give a code (200), a class (4xx) or 'error'")

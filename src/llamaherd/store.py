"""Every benchmark run, kept in SQLite in the state dir: what was measured, on what.

One table, one row per run. The figures a list or chart needs (generation tokens/s,
pass rates) are columns so they can be queried; everything else (the full results, the
settings, the hardware, the llama.cpp build and the profile's argv) is JSON beside them,
so a number can always be traced to the conditions it was measured under.

The daemon reads this file for GET /models while a benchmark writes it, so every
operation opens its own short connection and WAL mode lets readers and the writer pass.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaherd import paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,      -- 'speed' or 'humaneval'
    model       TEXT NOT NULL,      -- profile id, or the endpoint's model name
    label       TEXT NOT NULL,      -- what reports call it (the profile's name)
    endpoint    TEXT,               -- NULL for herd's own profiles, else the endpoint URL
    key         TEXT,               -- humaneval: what makes two runs the same (resume)
    status      TEXT NOT NULL,      -- 'running', 'done' or 'failed'
    started_at  REAL NOT NULL,
    finished_at REAL,
    gen_tps     REAL,               -- speed: median generation tokens/s, one stream
    base_pass   REAL,               -- humaneval: pass@1 on the base tests (0..1)
    plus_pass   REAL,               -- humaneval: pass@1 on base + plus tests (0..1)
    environment TEXT NOT NULL,      -- JSON: hardware, llama.cpp build, argv
    settings    TEXT NOT NULL,      -- JSON: what was asked for
    results     TEXT                -- JSON: every figure, or the failure
);
CREATE INDEX IF NOT EXISTS runs_by_model ON runs (kind, model, finished_at);
"""

DB_NAME = "bench.sqlite"


def default_path() -> Path:
    return paths.state_dir() / DB_NAME


@dataclass
class Run:
    id: int
    kind: str
    model: str
    label: str
    endpoint: str | None
    key: str | None
    status: str
    started_at: float
    finished_at: float | None
    gen_tps: float | None
    base_pass: float | None
    plus_pass: float | None
    environment: dict[str, Any]
    settings: dict[str, Any]
    results: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    @property
    def last_report_note(self) -> Path:
        """Where `herd bench report` notes the REPORT.md it wrote last (the web console
        shows that one)."""
        return self.path.with_name("last-report")

    def last_report(self) -> Path | None:
        try:
            report = Path(self.last_report_note.read_text().strip())
        except OSError:
            return None
        return report if report.is_file() else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
            with connection:  # one transaction, committed on success
                yield connection
        finally:
            connection.close()

    def start(
        self,
        kind: str,
        model: str,
        *,
        label: str,
        endpoint: str | None,
        environment: dict[str, Any],
        settings: dict[str, Any],
        key: str | None = None,
    ) -> int:
        """Record a run as started; returns its id (finish or fail it later)."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (kind, model, label, endpoint, key, status, started_at,"
                " environment, settings) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    kind,
                    model,
                    label,
                    endpoint,
                    key,
                    time.time(),
                    json.dumps(environment),
                    json.dumps(settings),
                ),
            )
            return int(cursor.lastrowid or 0)

    def finish(
        self,
        run_id: int,
        results: dict[str, Any],
        *,
        gen_tps: float | None = None,
        base_pass: float | None = None,
        plus_pass: float | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = 'done', finished_at = ?, results = ?, gen_tps = ?,"
                " base_pass = ?, plus_pass = ? WHERE id = ?",
                (time.time(), json.dumps(results), gen_tps, base_pass, plus_pass, run_id),
            )

    def fail(self, run_id: int, reason: str) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, results = ? WHERE id = ?",
                (time.time(), json.dumps({"error": reason}), run_id),
            )

    def get(self, run_id: int) -> Run | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def runs(
        self, kind: str | None = None, model: str | None = None, status: str | None = "done"
    ) -> list[Run]:
        """Runs, oldest first; by default only finished ones."""
        where, args = [], []
        for column, value in (("kind", kind), ("model", model), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY started_at, id", args).fetchall()
        return [_run(row) for row in rows]

    def unfinished(self, kind: str, key: str) -> Run | None:
        """The latest run with this key that never finished (to resume it)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE kind = ? AND key = ? AND status != 'done'"
                " ORDER BY started_at DESC, id DESC LIMIT 1",
                (kind, key),
            ).fetchone()
        return _run(row) if row else None

    def reopen(self, run_id: int) -> None:
        """A failed or interrupted run continues: running again, no result yet."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, results = NULL"
                " WHERE id = ?",
                (run_id,),
            )


def latest_speeds(path: Path | None = None) -> dict[str, float]:
    """Profile id -> generation tokens/s of its latest finished speed run (herd's own
    profiles only, not endpoints). What `herd models`, GET /models and the picker show.

    Read-only and silent: no store yet (nothing measured) is an empty answer, and a
    missing file is never created by a reader such as the daemon.
    """
    path = path or default_path()
    if not path.is_file():
        return {}
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute(
                "SELECT model, gen_tps FROM runs WHERE kind = 'speed' AND status = 'done'"
                " AND endpoint IS NULL AND gen_tps IS NOT NULL ORDER BY finished_at, id"
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return {}  # a store being created right now, or damaged: show "not measured"
    return {model: speed for model, speed in rows}  # later rows win


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        kind=row["kind"],
        model=row["model"],
        label=row["label"],
        endpoint=row["endpoint"],
        key=row["key"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        gen_tps=row["gen_tps"],
        base_pass=row["base_pass"],
        plus_pass=row["plus_pass"],
        environment=json.loads(row["environment"]),
        settings=json.loads(row["settings"]),
        results=json.loads(row["results"]) if row["results"] else {},
    )

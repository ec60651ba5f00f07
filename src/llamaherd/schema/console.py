"""The web console's own answers (daemon/console.py): what the other API routes do not
already say."""

from __future__ import annotations

from typing import Any

from llamaherd.schema.common import Answer


class ConsoleConfig(Answer):
    """GET /console/config: the effective configuration, secrets masked."""

    path: str | None  # the herd.toml it was read from
    effective: dict[str, Any]  # [server], the profiles and the top-level keys, as loaded


class BenchReport(Answer):
    """GET /console/report: the latest `herd bench report`, as HTML."""

    path: str | None  # its REPORT.md; null when none was written yet
    html: str | None
    charts: list[str] = []  # chart file names, served at /console/report/charts/NAME

"""Claude Code's own config dir for local models (CLAUDE_CONFIG_DIR, ~/.claude-local).

Seeded on first use from the templates in this package: a settings.json with Claude
Code's bash sandbox on and reads of credentials denied, and a CLAUDE.md that tells the
model how to work within a local model's limits. Files already there are the user's and
are never overwritten; the user's normal ~/.claude is never read or written.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

TEMPLATES = ("settings.json", "CLAUDE.md")
STATE_FILE = ".claude.json"
"""Claude Code's own state file inside CLAUDE_CONFIG_DIR. Seeded with onboarding done, so
the first start goes straight to work instead of offering an Anthropic login."""


def template(name: str) -> str:
    return resources.files("llamaherd.claude").joinpath("templates", name).read_text("utf-8")


def seed(directory: Path) -> list[Path]:
    """Create `directory` (private) with the templates it lacks; return the files written."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    files = {name: template(name) for name in TEMPLATES}
    files[STATE_FILE] = json.dumps({"hasCompletedOnboarding": True}, indent=2) + "\n"
    for name, text in files.items():
        path = directory / name
        if path.exists():
            continue
        _write_private(path, text)
        written.append(path)
    return written


def _write_private(path: Path, text: str) -> None:
    """Created exclusively (a file that appeared meanwhile is left alone), readable by the
    user only: Claude Code keeps session history and settings here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)

"""Claude Code's own config dir for local models (CLAUDE_CONFIG_DIR, ~/.claude-local).

Seeded on first use from the templates in this package: a settings.json with Claude
Code's bash sandbox on, reads of credentials denied and the long bash timeouts the
original claude-local gave local models (5 minutes by default, 10 at most: a local model
runs builds and test suites slower than the cloud would plan for), and a CLAUDE.md that
tells the model how to work within a local model's limits. Files already there are the
user's and are never overwritten; the user's normal ~/.claude is never read or written,
but `ide` links to ~/.claude/ide, where the editors' Claude Code extensions write their
lock files (as the original's install.sh linked it): Claude Code versions that look for
them in CLAUDE_CONFIG_DIR find them there, so `/ide` works.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

TEMPLATES = ("settings.json", "CLAUDE.md")
IDE_DIR = "ide"
STATE_FILE = ".claude.json"
"""Claude Code's own state file inside CLAUDE_CONFIG_DIR. Seeded with onboarding done, so
the first start goes straight to work instead of offering an Anthropic login."""


def template(name: str) -> str:
    return resources.files("llamaherd.agents.claude").joinpath("templates", name).read_text("utf-8")


def files() -> dict[str, str]:
    """What a new config dir is seeded with (what --print-config prints)."""
    seeded = {name: template(name) for name in TEMPLATES}
    seeded[STATE_FILE] = json.dumps({"hasCompletedOnboarding": True}, indent=2) + "\n"
    return seeded


def seed(directory: Path) -> list[Path]:
    """Create `directory` (private) with the files it lacks; return the files written."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name, text in files().items():
        path = directory / name
        if path.exists():
            continue
        _write_private(path, text)
        written.append(path)
    ide, editors = directory / IDE_DIR, Path.home() / ".claude" / IDE_DIR
    if not os.path.lexists(ide) and ide != editors:
        ide.symlink_to(editors)  # dangling until an editor's extension first runs
        written.append(ide)
    return written


def own_sandbox_enabled(directory: Path) -> bool:
    """Whether the settings.json there turns Claude Code's own bash sandbox on (a file
    that does not parse is Claude Code's to report)."""
    try:
        settings = json.loads((directory / "settings.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    sandbox = settings.get("sandbox") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enabled") is True


def _write_private(path: Path, text: str) -> None:
    """Created exclusively (a file that appeared meanwhile is left alone), readable by the
    user only: Claude Code keeps session history and settings here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)

"""Every agent `herd launch` knows, by name (docs/clients.md, "Agents")."""

from __future__ import annotations

from llamaherd.agents.base import Agent
from llamaherd.agents.claude.agent import CLAUDE
from llamaherd.agents.openai import AIDER, CODEX, CRUSH, OPENCODE, QWEN
from llamaherd.errors import UsageError

AGENTS: dict[str, Agent] = {a.name: a for a in (CLAUDE, OPENCODE, CODEX, CRUSH, QWEN, AIDER)}


def agent(name: str) -> Agent:
    """The agent called `name`; a usage error listing them when none is."""
    found = AGENTS.get(name.lower())
    if found is None:
        raise UsageError(f"unknown agent {name!r}; herd launches: {', '.join(AGENTS)}")
    return found

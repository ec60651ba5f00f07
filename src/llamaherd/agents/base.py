"""What `herd launch` knows of a coding agent (an `Agent`), and what it configures one
from (a `Setup`).

An agent is a row of data plus a few functions: its binary and how to install it, the
variables and config files that point it at herd's gateway, the variables of the user's
shell that would send it elsewhere, and how to run it once without a terminal (the
tests do; docs/clients.md lists them). agents/launch.py does the rest the same way for
every agent: the config dir, the sandbox, the relay, the run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llamaherd import paths
from llamaherd.config import Config, Profile
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError, UsageError

PLACEHOLDER_KEY = "herd-local"
"""Sent as the API key when the gateway wants none: most agents insist on one."""
KEY_VARIABLE = "HERD_API_KEY"
"""The variable the agents' config files name for the key (never written into a file or
onto a command line)."""
DEFAULT_CONTEXT = 32768
"""The context window an agent is told of when a profile leaves ctx to the model."""


@dataclass(frozen=True)
class Setup:
    """What an agent's variables and files are made from."""

    config: Config
    model: str
    """The profile it starts on (the gateway's `auto` with --route)."""
    url: str
    """The gateway as the agent reaches it: the relay's address inside the sandbox."""
    directory: Path
    """The agent's own config dir."""
    routed: bool = False

    @property
    def v1(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"{self.url}/v1"

    @property
    def key(self) -> str:
        """The gateway's key ($HERD_API_KEY, [server] api_key), else a placeholder."""
        return os.environ.get(KEY_VARIABLE) or self.config.server.api_key or PLACEHOLDER_KEY

    @property
    def profiles(self) -> list[Profile]:
        """Every profile, the one it starts on first."""
        return sorted(self.config.models.values(), key=lambda p: p.id != self.model)


def gateway_url(config: Config) -> str:
    """The running daemon's gateway (it may run with other ports), else the config's."""
    record = running_record() or {}
    return record.get("url") or config.server.public_url


def pick_model(config: Config, *names: str | None) -> str:
    """The profile id of the first name given, else default_model."""
    name = next((n for n in names if n), None) or config.default_model
    if name is None:
        raise UsageError(f"which model? give an id: {', '.join(config.models)}")
    return config.resolve(name).id


def context_of(profile: Profile) -> int:
    return profile.ctx or DEFAULT_CONTEXT


@dataclass(frozen=True)
class Agent:
    """One coding agent `herd launch NAME` runs (agents/table.py lists them)."""

    name: str
    title: str
    binary: str
    install: str
    """The command that installs it, for the error when it is missing."""
    environment: Callable[[Setup], dict[str, str]]
    """herd's variables for it (the gateway, the model, its config dir, quiet networking)."""
    files: Callable[[Setup], dict[str, str]]
    """Its config files, by path relative to its config dir."""
    example: tuple[str, ...]
    """Arguments that run it once without a terminal, e.g. ("run", "say hi")."""
    dropped: tuple[str, ...] = ()
    """The user's variables that would send it elsewhere than the gateway."""
    seed: Callable[[Path], list[Path]] | None = None
    """Writes the config dir itself and returns what it wrote (Claude Code's: once, the
    user's afterwards); default: `files`, herd's, rewritten on each start from the
    profiles."""
    find: Callable[[Config], Path] | None = None
    """How to find the binary; default: PATH, then npm's global bin dir."""
    home: Callable[[Config], Path] | None = None
    """Its config dir; default: agents/NAME in herd's state dir."""
    preferred: Callable[[Config], str | None] | None = None
    """The profile herd.toml says it starts on ([claude] main)."""
    check: Callable[[Path], None] | None = None
    """Refuses to start (HerdError) when its config dir asks for what is missing."""
    first_request_tokens: int | None = None
    """About how many tokens its first request holds (system prompt, tool schemas): a
    profile with less context gets a warning."""

    def config_dir(self, config: Config) -> Path:
        if self.home is not None:
            return self.home(config)
        return (paths.state_dir() / "agents" / self.name).absolute()

    def executable(self, config: Config) -> Path:
        if self.find is not None:
            return self.find(config)
        found = shutil.which(self.binary) or _npm_global_bin(self.binary)
        if found is None:
            raise HerdError(
                f"{self.title} (`{self.binary}`) not found on PATH; install it with "
                f"`{self.install}`, or put its directory on PATH"
            )
        return Path(found)


def _npm_global_bin(binary: str) -> str | None:
    """`binary` in npm's global bin dir, for when that dir is not on PATH."""
    npm = shutil.which("npm")
    if not npm:
        return None
    try:
        prefix = subprocess.run(
            [npm, "prefix", "-g"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    candidate = Path(prefix) / "bin" / binary if prefix else None
    return str(candidate) if candidate and os.access(candidate, os.X_OK) else None


def full_environment(
    agent: Agent, base: Mapping[str, str], herd: Mapping[str, str]
) -> dict[str, str]:
    """The process environment: the user's, minus what would redirect it, plus herd's."""
    return {k: v for k, v in base.items() if k not in agent.dropped} | dict(herd)


def exports(agent: Agent, herd: Mapping[str, str]) -> str:
    """`export NAME=value` lines for a shell (or to copy into an editor's settings)."""
    lines = [f"unset {' '.join(agent.dropped)}"] if agent.dropped else []
    lines += [f"export {name}={shlex.quote(value)}" for name, value in herd.items()]
    return "\n".join(lines)

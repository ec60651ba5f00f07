"""What a reload may change while the daemon runs (issue 12).

A reload re-reads a file the daemon did not write. Two changes would let whoever can
write that file, or whoever wrote a config to an exposed daemon, run or reach more than
the daemon was started to allow:

- `env` and `args` of a profile (or a new profile) decide what the next llama-server
  start runs, as the daemon's user: `env = { LD_PRELOAD = ... }` runs any code. Such a
  reload is taken only from a file owned by the daemon's user and not writable by group
  or others.
- `api_key`: while the sockets are bound to a non-loopback address (a reload cannot
  move them), a file without a key would open both ports to the network.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from llamaherd.config import Config
from llamaherd.errors import ConfigError
from llamaherd.netaddr import is_loopback

log = logging.getLogger(__name__)


def launch_changes(old: Config, new: Config) -> list[str]:
    """What changed in what llama-server runs with: 'id: new profile', 'id: env KEY, ...',
    'id: args'. Env values are never named (they may be secrets)."""
    changes = []
    for pid, profile in new.models.items():
        before = old.models.get(pid)
        if before is None:
            changes.append(f"{pid}: new profile")
            continue
        keys = sorted(
            key
            for key in before.env.keys() | profile.env.keys()
            if before.env.get(key) != profile.env.get(key)
        )
        what = [f"env {', '.join(keys)}"] if keys else []
        if before.args != profile.args:
            what.append("args")
        if what:
            changes.append(f"{pid}: {'; '.join(what)}")
    return changes


def untrusted_because(path: Path) -> str | None:
    """Why a file may not change what the daemon runs (None: it may)."""
    info = path.stat()
    if info.st_uid != os.geteuid():
        return f"it is owned by uid {info.st_uid}, not the daemon's user (uid {os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def check_reload(old: Config, new: Config, path: Path, bound_host: str) -> None:
    """Raise ConfigError when this reload must be refused; log what it changes."""
    if not is_loopback(bound_host) and new.server.api_key is None:
        raise ConfigError(
            f"the daemon listens on {bound_host}, reachable from other machines, and the "
            "new file sets no api_key; the old config stays",
            path=path,
            key="server.api_key",
            hint="keep api_key in [server], or restart the daemon on 127.0.0.1 without one",
        )
    changes = launch_changes(old, new)
    if not changes:
        return
    problem = untrusted_because(path)
    if problem:
        raise ConfigError(
            f"this reload changes what llama-server runs ({'; '.join(changes)}) but {problem}; "
            "the old config stays",
            path=path,
            hint=f"chmod go-w {path} and chown it to the daemon's user, then reload again",
        )
    log.info("reload changes what the next start runs: %s", "; ".join(changes))

"""Where llamaherd keeps things, following the platform's conventions (platformdirs).

Every location can be moved with an environment variable, which is how tests keep
away from a daemon the user runs: HERD_STATE_DIR, HERD_CACHE_DIR, HERD_CONFIG_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from llamaherd.errors import HerdError

APP = "llamaherd"


def _dir(env: str, default: str) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else Path(default)


def state_dir() -> Path:
    """Daemon pid/lock, logs, demo models: things that change while herd runs."""
    return _dir("HERD_STATE_DIR", platformdirs.user_state_dir(APP))


def writable_state_dir() -> Path:
    """state_dir(), created; a one-line HerdError when it cannot be created or written
    (a read-only disk, a file in the way, permissions), instead of a traceback later."""
    path = state_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as error:
        raise HerdError(
            f"cannot use the state dir {path}: {error.strerror or error}; "
            "set HERD_STATE_DIR to a writable directory, or fix that path's permissions"
        ) from None
    return path


def cache_dir() -> Path:
    """llama.cpp sources and builds: large, rebuildable."""
    return _dir("HERD_CACHE_DIR", platformdirs.user_cache_dir(APP))


def config_dir() -> Path:
    """Where the user's herd.toml lives when none is given or found nearby."""
    return _dir("HERD_CONFIG_DIR", platformdirs.user_config_dir(APP))

"""The running daemon's record: the lock held for its lifetime and daemon.json.

Clients (the CLI, `herd claude`, doctor) read the record to find the daemon without
importing the server.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from llamaherd import paths
from llamaherd.errors import HerdError

RECORD = "daemon.json"


def running_record(state_dir: Path | None = None) -> dict | None:
    """The record the running daemon wrote (pid, API url, config), if its pid is alive."""
    path = (state_dir or paths.state_dir()) / RECORD
    try:
        record = json.loads(path.read_text())
        os.kill(record["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return record


def acquire_lock(state_dir: Path) -> IO[str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "daemon.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        record = running_record(state_dir) or {}
        raise HerdError(
            f"a herd daemon is already running (pid {record.get('pid', '?')}, "
            f"API {record.get('api_url', '?')}); stop it with `herd down --all`"
        ) from None
    return handle

"""What the CLI's commands do, as plain functions that tests and scripts can call too.

The config's models (pydantic) load only in the functions that read profiles: `reach`
finds the daemon from herd.toml's [server] table alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaherd import paths
from llamaherd.client import DaemonClient
from llamaherd.config.locate import (
    DEFAULT_API_PORT,
    DEFAULT_HOST,
    DaemonAddress,
    daemon_address,
    find_config_path,
)
from llamaherd.daemon.record import running_record
from llamaherd.errors import ConfigError, HerdError, UsageError
from llamaherd.netaddr import local_url

if TYPE_CHECKING:
    from llamaherd.config import Config
    from llamaherd.schema import SwitchDone, SwitchFailed

PROGRESS_POLL_S = 0.25  # how often `herd up` asks /status how far a load is


def find_config(explicit: str | Path | None = None) -> Config:
    """herd.toml by the usual lookup; when there is none, the running daemon's own config.

    So after `herd demo` (whose config lives in the state dir), `herd models` and
    `herd doctor` work from any directory.
    """
    from llamaherd.config import load_config

    return load_config(config_path(explicit))


def config_path(explicit: str | Path | None) -> Path:
    """The herd.toml find_config loads."""
    try:
        return find_config_path(explicit)
    except ConfigError:
        record = running_record()
        if explicit or os.environ.get("HERD_CONFIG") or not (record and record.get("config")):
            raise
        return Path(record["config"])


def connect(config: Config | None = None, url: str | None = None) -> DaemonClient:
    """A client for the daemon: --url/$HERD_URL, else the running daemon's record, else config."""
    return _client(_address(config), url)


def reach(explicit: str | Path | None = None) -> DaemonClient:
    """connect(), for the commands that only talk to the daemon (status, switch, logs ...):
    herd.toml's [server] table is read on its own (locate.daemon_address), so they start
    without the config's models. The whole file is loaded only when that table is not
    plainly valid, to report what is wrong as `herd models` would; a herd.toml that is
    missing or wrong and not named with --config is passed over, as connect(None) is."""
    try:
        path = config_path(explicit)
        address = daemon_address(path) or _address(find_config(path))
    except UsageError:
        if explicit:
            raise
        address = None
    return _client(address)


def _address(config: Config | None) -> DaemonAddress | None:
    return DaemonAddress(config.server.api_url, config.server.api_key) if config else None


def _client(address: DaemonAddress | None, url: str | None = None) -> DaemonClient:
    key = os.environ.get("HERD_API_KEY") or (address.api_key if address else None)
    url = url or os.environ.get("HERD_URL")
    if not url:
        record = running_record()
        if record:
            url = record["api_url"]
        elif address:
            url = address.api_url
        else:
            url = local_url(DEFAULT_HOST, DEFAULT_API_PORT)
    return DaemonClient(url, key)


def up(
    config: Config,
    model: str,
    on_progress: Callable[[float, str], None] | None = None,
) -> SwitchDone | SwitchFailed:
    """Start the daemon if needed and make `model` the running one; `on_progress` gets
    the load's fraction and stage from /status while it starts.

    Returns the API's /switch answer: SwitchFailed when the model failed to start (it
    says why, and which model was restored).
    """
    from llamaherd.config.checks import missing_model_file

    profile = config.resolve(model)  # unknown ids fail here, before a daemon starts
    if missing := missing_model_file(config, profile):
        raise missing  # and so does a GGUF not on disk (yet)
    client = start_background(config)
    timeout = config.server.start_timeout * 2 + 60
    if on_progress is None:
        return client.switch(profile.id, timeout=timeout)
    done = threading.Event()
    watcher = threading.Thread(
        target=_report_progress, args=(client, profile.id, on_progress, done), daemon=True
    )
    watcher.start()
    try:
        return client.switch(profile.id, timeout=timeout)
    finally:
        done.set()
        watcher.join()


def _report_progress(
    client: DaemonClient,
    model: str,
    on_progress: Callable[[float, str], None],
    done: threading.Event,
) -> None:
    """Poll /status while a switch runs; a failed poll just waits for the next."""
    while not done.wait(PROGRESS_POLL_S):
        try:
            loaded = {m.model: m for m in client.status().loaded}
        except HerdError:
            continue
        entry = loaded.get(model)
        if entry is not None and entry.progress is not None:
            on_progress(entry.progress, entry.stage or "")


def down(
    client: DaemonClient,
    *,
    model: str | None = None,
    stop_daemon: bool = False,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Stop the running models (or one); with stop_daemon, the daemon too (and wait until
    it is gone). Answers {"stopped": [ids], ...}."""
    answer = client.stop(model).model_dump()
    if not stop_daemon:
        return answer
    record = running_record()
    local = record is not None and record["api_url"] == client.url
    client.shutdown()
    deadline = time.monotonic() + timeout
    # A local daemon is gone once it removed its record (after stopping its models).
    while client.alive() or (local and running_record() is not None):
        if time.monotonic() > deadline:
            raise HerdError(f"the daemon at {client.url} did not stop within {timeout:g}s")
        time.sleep(0.1)
    return {**answer, "daemon_stopped": True}


def prepare_demo(
    *, synthetic: bool = False, progress: Callable[[str, int, int], None] | None = None
) -> Config:
    """Fetch the real demo models (or write the synthetic ones) and their herd.toml into
    the state dir; return that config. progress(model, bytes done, total) while fetching."""
    from llamaherd import demo  # numpy and gguf write the models: only `herd demo` needs them
    from llamaherd.config import load_config

    directory = paths.state_dir() / ("demo-synthetic" if synthetic else "demo")
    return load_config(demo.write_demo(directory, synthetic=synthetic, progress=progress))


def chat(
    url: str,
    prompt: str,
    *,
    model: str | None = None,
    max_tokens: int = 32,
    timeout: float = 120.0,
) -> dict:
    """One chat completion against a served model (what `herd demo` shows)."""
    import httpx  # only `herd demo` chats; the other commands start faster without it

    request: dict = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    if model:
        request["model"] = model
    response = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=timeout)
    response.raise_for_status()
    return response.json()


def start_background(config: Config, *, timeout: float = 30.0) -> DaemonClient:
    """Start `herd serve` detached (unless one runs) and return a client once it answers
    (the daemon outlives the terminal that ran `herd up`)."""
    client = DaemonClient(config.server.api_url, config.server.api_key)
    if client.alive():
        _check_same_config(client, config)
        return client
    state_dir = paths.writable_state_dir()
    log_path = state_dir / "daemon.log"
    command = [sys.executable, "-m", "llamaherd"]
    if config.path:
        command += ["--config", str(config.path)]
    command.append("serve")
    with log_path.open("a") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the terminal that ran `herd up`
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.alive():
            return client
        if process.poll() is not None:
            raise HerdError(f"the daemon exited at start: {_last_line(log_path)} (log: {log_path})")
        time.sleep(0.1)
    process.kill()
    raise HerdError(f"the daemon did not answer within {timeout:g}s (log: {log_path})")


def _check_same_config(client: DaemonClient, config: Config) -> None:
    running = client.status().daemon.config
    if config.path and running and Path(running) != Path(config.path):
        raise HerdError(
            f"a daemon is already running with {running}, not {config.path}; "
            "stop it with `herd down --all` or use that config"
        )


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"

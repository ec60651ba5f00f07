"""What the CLI's commands do, as plain functions that tests and scripts can call too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaherd import paths
from llamaherd.client import DaemonClient
from llamaherd.config import Config, find_config_path, load_config
from llamaherd.config.checks import missing_model_file
from llamaherd.daemon.record import running_record
from llamaherd.errors import ConfigError, HerdError
from llamaherd.schema import SwitchDone, SwitchFailed


def find_config(explicit: str | Path | None = None) -> Config:
    """herd.toml by the usual lookup; when there is none, the running daemon's own config.

    So after `herd demo` (whose config lives in the state dir), `herd models` and
    `herd doctor` work from any directory.
    """
    try:
        path = find_config_path(explicit)
    except ConfigError:
        record = running_record()
        if explicit or os.environ.get("HERD_CONFIG") or not (record and record.get("config")):
            raise
        path = Path(record["config"])
    return load_config(path)


def connect(config: Config | None = None, url: str | None = None) -> DaemonClient:
    """A client for the daemon: --url/$HERD_URL, else the running daemon's record, else config."""
    key = os.environ.get("HERD_API_KEY") or (config.server.api_key if config else None)
    url = url or os.environ.get("HERD_URL")
    if not url:
        record = running_record()
        if record:
            url = record["api_url"]
        elif config:
            url = config.server.api_url
        else:
            url = "http://127.0.0.1:8081"
    return DaemonClient(url, key)


def up(config: Config, model: str) -> SwitchDone | SwitchFailed:
    """Start the daemon if needed and make `model` the running one.

    Returns the API's /switch answer: SwitchFailed when the model failed to start (it
    says why, and which model was restored).
    """
    profile = config.resolve(model)  # unknown ids fail here, before a daemon starts
    if missing := missing_model_file(config, profile):
        raise missing  # and so does a GGUF not on disk (yet)
    client = start_background(config)
    return client.switch(profile.id, timeout=config.server.start_timeout * 2 + 60)


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

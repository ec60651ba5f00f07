"""`herd claude`'s sandbox holds: a real sandboxed process next to a real daemon.

From inside, only the gateway answers (not the management API, not llama-server's own
port); herd.toml (here in the project, the usual case), the user config dir and herd's
state cannot be changed or read; planted credentials (variables and files) are gone; and
the strict home is empty but for what Claude Code needs.

The probe stands in for Claude Code: [claude] binary is this Python, so the same
`launch.prepare` and `launch.run` that `herd claude` uses build and run its sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import write_config
from test_claude import require_sandbox

from llamaherd import control
from llamaherd.agents import launch, relay, sandbox, secrets
from llamaherd.agents.claude.agent import CLAUDE
from llamaherd.config import load_config
from llamaherd.errors import ConfigError, HerdError, UsageError

PLANTED_ENV = {
    "DATABASE_URL": "postgres://app:hunter2@db.internal/app",
    "AZURE_CLIENT_SECRET": "azure-secret-value",
    "GOOGLE_API_KEY": "google-key-value",
    "OPENROUTER_API_KEY": "openrouter-key-value",
    "GITHUB_PAT": "github-pat-value",
    "HF_TOKEN": "hf-token-value",
    "MYSQL_PWD": "mysql-password",
    "SOME_SERVICE_URL": "https://deploy:tok3n@git.example.com/repo.git",
    "LOOKS_HARMLESS": "ghp_" + "a" * 36,
}
PLANTED_FILES = (
    ".cache/huggingface/token",
    ".config/git/credentials",
    ".git-credentials",
    ".pgpass",
    ".config/rclone/rclone.conf",
    ".netrc",
    ".docker/config.json",
    ".kube/config",
    ".aws/credentials",
    ".config/gcloud/credentials.db",
    ".ssh/id_ed25519",
    ".bash_history",
    ".zsh_history",
    ".local/share/fish/fish_history",
)
SECRET = "planted-secret-7d1f"

PROBE = r"""
import json, os, pathlib, socket, sys, urllib.request

spec = json.loads(sys.argv[1])
home = pathlib.Path(os.environ["HOME"])

def attempt(action):
    try:
        return action()
    except OSError as error:
        return type(error).__name__

def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "connected"

def get(url):
    return urllib.request.urlopen(url, timeout=30).status

def read(path):
    return pathlib.Path(path).read_text()

def append(path):
    with open(path, "a") as handle:
        handle.write('\n[models.dense.env]\nLD_PRELOAD = "evil.so"\n')
    return "written"

def replace(path):
    new = pathlib.Path(spec["project"]) / "replacement.toml"
    new.write_text("evil = true\n")
    os.replace(new, path)
    return "replaced"

report = {
    "home": sorted(os.listdir(home)),  # before the probe writes there
    "gateway": attempt(lambda: get(os.environ["ANTHROPIC_BASE_URL"] + "/v1/models")),
    "api": attempt(lambda: connect(spec["api_port"])),
    "api_via_host": attempt(lambda: get(spec["api_url"] + "/status")),
    "llama_server": attempt(lambda: connect(spec["llama_port"])),
    "herd_toml_append": attempt(lambda: append(spec["herd_toml"])),
    "herd_toml_replace": attempt(lambda: replace(spec["herd_toml"])),
    "herd_toml_read": attempt(lambda: "readable" if read(spec["herd_toml"]) else "empty"),
    "config_dir": attempt(lambda: append(pathlib.Path(spec["config_dir"]) / "herd.toml")),
    "state": attempt(lambda: read(pathlib.Path(spec["state_dir"]) / "daemon.json")),
    "git_hook": attempt(lambda: append(pathlib.Path(spec["project"]) / ".git/hooks/pre-commit")),
    "project": attempt(lambda: append(pathlib.Path(spec["project"]) / "made-inside.txt")),
    "claude_config": attempt(lambda: append(home / ".claude-local" / "made-inside.txt")),
    "home_write": attempt(lambda: append(home / "planted.txt")),
    "etc": attempt(lambda: append("/etc/herd-sandbox-test")),
    "tmp": attempt(lambda: append("/tmp/herd-sandbox-test")),
    "files": {name: attempt(lambda: read(home / name)) for name in spec["files"]},
    "env": dict(os.environ),
}
(pathlib.Path(spec["project"]) / "report.json").write_text(json.dumps(report))
"""


@pytest.fixture
def planted_home(monkeypatch: pytest.MonkeyPatch):
    """A private HOME holding credentials, with herd's state and config dirs in it (where
    they are by default), and credentials in the environment."""
    path = Path(tempfile.mkdtemp(prefix="herd-home-", dir="/var/tmp"))
    for name in PLANTED_FILES:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(f"{SECRET}\n")
    (path / ".bashrc").write_text("# not a secret, but not needed in strict mode\n")
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.setenv("HERD_STATE_DIR", str(path / ".local/state/llamaherd"))
    monkeypatch.setenv("HERD_CONFIG_DIR", str(path / ".config/llamaherd"))
    (path / ".config/llamaherd").mkdir(parents=True)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    for name, value in PLANTED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HERD_TEST_PASSED", "kept by pass_env")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_probe(planted_home: Path, model_files: Path, llama_server: Path, mode: str) -> dict:
    """A daemon whose herd.toml is in the project, a llama-server running, and the probe
    run in the sandbox `herd claude` builds in `mode`; the probe's report."""
    require_sandbox()
    project = planted_home / "project"
    (project / ".git" / "hooks").mkdir(parents=True)
    extra = f'\n[claude]\nbinary = "{sys.executable}"\npass_env = ["HERD_TEST_PASSED"]\n'
    config = load_config(write_config(project, model_files, llama_server, extra))
    original = config.path.read_text()
    answer = control.up(config, "dense")
    assert answer.ok, answer
    status = control.connect(config).status()
    spec = {
        "project": str(project),
        "herd_toml": str(config.path),
        "api_port": config.server.api_port,
        "api_url": config.server.api_url,
        "llama_port": status.port,
        "config_dir": str(planted_home / ".config/llamaherd"),
        "state_dir": os.environ["HERD_STATE_DIR"],
        "files": PLANTED_FILES,
    }
    # The llama-server port answers from outside: what the sandbox blocks is really there.
    assert httpx.get(f"http://127.0.0.1:{status.port}/health", timeout=10).status_code == 200
    plan = launch.prepare(
        CLAUDE, config, "dense", mode=mode, args=["-c", PROBE, json.dumps(spec)], project=project
    )
    assert plan.sandboxed
    assert launch.run(plan) == 0
    assert not plan.gateway.directory.exists()  # the relay's socket is cleaned up
    assert config.path.read_text() == original
    assert control.connect(config).alive()
    return json.loads((project / "report.json").read_text())


def test_sandbox_reaches_only_the_gateway_and_keeps_herd_and_secrets_out_of_reach(
    planted_home: Path, make_herd, model_files: Path, llama_server: Path
) -> None:
    report = run_probe(planted_home, model_files, llama_server, "on")
    assert report["gateway"] == 200
    # Nothing else of herd: its own network namespace has only the relayed gateway.
    assert report["api"] == "ConnectionRefusedError"
    assert report["api_via_host"] in ("URLError", "ConnectionRefusedError")
    assert report["llama_server"] == "ConnectionRefusedError"
    # herd.toml in the project: readable, but neither edited nor replaced (EROFS, EBUSY).
    assert report["herd_toml_read"] == "readable"
    assert report["herd_toml_append"] == "OSError"
    assert report["herd_toml_replace"] == "OSError"
    assert report["config_dir"] == "OSError"
    assert report["state"] == "FileNotFoundError"  # herd's state dir is empty inside
    assert report["git_hook"] == "OSError"  # a hook would run outside, at the next commit
    assert report["project"] == "written" and report["claude_config"] == "written"
    assert report["home_write"] == "OSError" and not (planted_home / "planted.txt").exists()
    assert report["etc"] == "OSError" and not Path("/etc/herd-sandbox-test").exists()
    assert report["tmp"] == "written" and not Path("/tmp/herd-sandbox-test").exists()
    # Planted credentials: no file readable, no variable passed, pass_env honoured.
    assert all(
        result in ("FileNotFoundError", "PermissionError") for result in (report["files"].values())
    ), report["files"]
    inside = report["env"]
    assert not set(PLANTED_ENV) & set(inside)
    assert SECRET not in json.dumps(report) and "hunter2" not in json.dumps(inside)
    assert inside["HERD_TEST_PASSED"] == "kept by pass_env"
    assert inside["ANTHROPIC_AUTH_TOKEN"] and inside["HOME"] == str(planted_home)
    assert ".bashrc" in report["home"]  # the default mode hides only credentials


def test_strict_sandbox_home_is_empty_but_for_the_project_and_claude_config(
    planted_home: Path, make_herd, model_files: Path, llama_server: Path
) -> None:
    report = run_probe(planted_home, model_files, llama_server, "strict")
    assert report["gateway"] == 200
    assert report["api"] == "ConnectionRefusedError"
    assert report["herd_toml_append"] == "OSError"
    assert report["home"] == [".claude-local", "project"]
    assert report["home_write"] == "written"  # an empty tmpfs, gone with the sandbox
    assert not (planted_home / "planted.txt").exists()
    assert set(report["files"].values()) == {"FileNotFoundError"}
    # The environment is an allowlist: the user's other variables stay outside too.
    inside = report["env"]
    assert inside["HERD_TEST_PASSED"] == "kept by pass_env"
    assert "HERD_STATE_DIR" not in inside and not set(PLANTED_ENV) & set(inside)
    assert {"PATH", "HOME", "ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR"} <= set(inside)


# -- the environment filter (no process) ----------------------------------------------------


def test_secrets_are_dropped_by_name_and_value_and_pass_env_keeps_them() -> None:
    environ = {
        **PLANTED_ENV,
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "SSH_AUTH_SOCK": "/run/user/1000/ssh",
        "PATH": "/usr/bin",
        "PWD": "/work",
        "TERM": "xterm",
        "LANG": "C.UTF-8",
        "EDITOR": "vi",
        "PROJECT_URL": "https://example.com/repo",
    }
    kept = secrets.scrub(environ)
    assert sorted(kept) == ["EDITOR", "LANG", "PATH", "PROJECT_URL", "PWD", "TERM"]
    assert (
        secrets.scrub(environ, keep=["DATABASE_URL"])["DATABASE_URL"]
        == (PLANTED_ENV["DATABASE_URL"])
    )
    strict = secrets.scrub(environ, keep=["GITHUB_PAT"], strict=True)
    assert sorted(strict) == ["EDITOR", "GITHUB_PAT", "LANG", "PATH", "TERM"]


def test_sandbox_mode_comes_from_the_options_then_the_config(tmp_path: Path) -> None:
    def config(table: str):
        path = tmp_path / "herd.toml"
        path.write_text('[models.a]\nfile = "a.gguf"\n' + table)
        return load_config(path, check_files=False)

    default, strict = config(""), config('[claude]\nsandbox = "strict"\n')
    assert launch.sandbox_mode(default, None, False) == "auto"
    assert launch.sandbox_mode(default, True, False) == "on"
    assert launch.sandbox_mode(default, None, True) == "strict"
    assert launch.sandbox_mode(strict, None, False) == "strict"
    assert launch.sandbox_mode(strict, True, False) == "strict"
    assert launch.sandbox_mode(strict, False, False) == "off"
    with pytest.raises(UsageError, match="--strict and --no-sandbox"):
        launch.sandbox_mode(default, False, True)
    with pytest.raises(ConfigError, match='claude.sandbox: invalid value "strikt"'):
        config('[claude]\nsandbox = "strikt"\n')


def test_a_gateway_the_relay_cannot_carry_is_a_clear_error() -> None:
    with pytest.raises(HerdError, match="only a plain http:// gateway, not https://h:8443"):
        relay.Relay.for_gateway("https://h:8443")


def test_strict_home_shows_an_npm_install_of_claude_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    package = home / ".npm-global/lib/node_modules/@anthropic-ai/claude-code"
    (package / "bin").mkdir(parents=True)
    (package / "bin/claude.exe").write_text("#!/bin/sh\n")
    (package / "bin/claude.exe").chmod(0o755)
    link = home / ".npm-global/bin/claude"
    link.parent.mkdir()
    link.symlink_to(package / "bin/claude.exe")
    (home / ".ssh").mkdir()
    argv = sandbox.wrap([str(link)], project=home / "project", home=home, strict=True)
    text = " ".join(argv)
    assert f"--tmpfs {home} " in text
    # npm's link and the tree that holds the package and its native dependency
    assert f"--ro-bind {home / '.npm-global/bin'} " in text
    assert f"--ro-bind {home / '.npm-global/lib'} " in text
    assert text.index(f"--tmpfs {home} ") < text.index(".npm-global/lib")
    assert ".ssh" not in text  # not in the empty home: nothing to hide

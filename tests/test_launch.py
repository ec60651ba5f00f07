"""`herd launch AGENT`: each agent's config dir seeded with the profiles, its environment,
the CLI's --print-env/--print-config and install hint, and opencode and Codex run for
real, sandboxed, against the demo model through the gateway.

Each test gets its own HOME under /var/tmp (the sandbox's /tmp is private).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import httpx
import pytest
from conftest import run_herd
from test_claude import PROFILES, profiles, require_sandbox

from llamaherd import paths
from llamaherd.agents import launch, sandbox
from llamaherd.agents.base import KEY_VARIABLE
from llamaherd.agents.table import AGENTS, agent
from llamaherd.daemon import routing as route
from llamaherd.daemon.record import running_record
from llamaherd.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
# Where `make agents` installs the agents tested for real from the npm registry.
AGENTS_BIN = REPO / ".cache" / "agents" / "node_modules" / ".bin"
IN_CI = os.environ.get("CI") == "true"


def agent_bin_dir(name: str) -> Path:
    """The directory that holds the agent `name` (`make agents`, else PATH)."""
    if (AGENTS_BIN / name).exists():
        return AGENTS_BIN
    found = shutil.which(name)
    if found is None:
        message = f"no {name}: run `make agents` ({agent(name).install})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Path(found).parent


@pytest.fixture
def user_home(monkeypatch: pytest.MonkeyPatch):
    path = Path(tempfile.mkdtemp(prefix="herd-home-", dir="/var/tmp"))
    (path / ".config" / "opencode").mkdir(parents=True)
    (path / ".config" / "opencode" / "opencode.json").write_text('{"model": "cloud/x"}\n')
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- config dirs and environments (no server) ---------------------------------------------


def test_every_agent_gets_the_profiles_in_its_own_config_dir_and_the_key_by_variable(
    monkeypatch: pytest.MonkeyPatch, user_home: Path
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "s3cret-key")
    config = profiles()
    for name, row in AGENTS.items():
        variables = launch.herd_environment(row, config, "coder")
        directory = row.config_dir(config)
        if name != "claude":
            assert directory == paths.state_dir().absolute() / "agents" / name
        written = {
            p.relative_to(directory).as_posix(): p.read_text()
            for p in directory.rglob("*")
            if p.is_file()
        }
        assert written, name
        text = "".join(written.values()) + " ".join(
            v for k, v in variables.items() if "KEY" not in k and "TOKEN" not in k
        )
        assert "s3cret-key" not in text, name  # the key only ever in its variable
        assert "s3cret-key" in variables.values(), name
        if name == "claude":
            continue
        assert "http://127.0.0.1:8080/v1" in text, name  # the gateway's OpenAI API
        # Qwen Code is told of the model it starts on only (OPENAI_MODEL).
        for profile in ("coder",) if name == "qwen" else ("small", "coder", "big"):
            assert profile in text, (name, profile)

    opencode = json.loads((paths.state_dir() / "agents/opencode/opencode.json").read_text())
    herd = opencode["provider"]["herd"]
    assert opencode["model"] == "herd/coder"
    assert herd["options"] == {
        "baseURL": "http://127.0.0.1:8080/v1",
        "apiKey": "{env:HERD_API_KEY}",
    }
    assert herd["models"]["big"]["limit"]["context"] == 131072
    codex = tomllib.loads((paths.state_dir() / "agents/codex/config.toml").read_text())
    assert codex["model"] == "coder" and codex["model_provider"] == "herd"
    assert codex["model_providers"]["herd"]["env_key"] == KEY_VARIABLE
    assert codex["profiles"]["small"]["model_context_window"] == 4096  # --profile small
    # The user's own opencode config is neither read nor written: XDG points inside.
    variables = launch.herd_environment(agent("opencode"), config, "coder")
    assert variables["XDG_CONFIG_HOME"].startswith(str(paths.state_dir()))
    assert (user_home / ".config/opencode/opencode.json").read_text() == '{"model": "cloud/x"}\n'


def test_route_names_the_gateways_auto_model_and_edits_to_herds_files_are_rewritten(
    user_home: Path,
) -> None:
    config = profiles()
    opencode = agent("opencode")
    variables = launch.herd_environment(opencode, config, "small", routed=True)
    path = Path(variables["OPENCODE_CONFIG"])
    chosen = json.loads(path.read_text())
    assert chosen["model"] == f"herd/{route.AUTO}"
    assert route.AUTO in chosen["provider"]["herd"]["models"]
    path.write_text("{}")
    launch.herd_environment(opencode, config, "big")  # herd's file: rewritten on each start
    assert json.loads(path.read_text())["model"] == "herd/big"
    aider = launch.herd_environment(agent("aider"), config, "big")
    assert aider["AIDER_MODEL"] == "openai/big"
    assert aider["OPENAI_API_BASE"] == "http://127.0.0.1:8080/v1"


def test_an_unknown_agent_is_a_usage_error_naming_them_all() -> None:
    with pytest.raises(UsageError, match="unknown agent 'gemni'; herd launches: claude, opencode"):
        agent("gemni")


def test_agent_config_dir_in_the_hidden_state_dir_stays_writable_in_the_sandbox(
    user_home: Path,
) -> None:
    state = paths.state_dir()
    mine = state / "agents" / "opencode"
    mine.mkdir(parents=True)
    argv = sandbox.wrap(
        ["opencode"], project=user_home, home=user_home, writable=[mine], hidden=[state]
    )
    text = " ".join(argv)
    # herd's state dir is emptied, then only the agent's own dir is bound back on top.
    assert f"--tmpfs {state}" in text
    assert text.index(f"--tmpfs {state}") < text.rindex(f"--bind {mine} {mine}")


def test_print_env_print_config_and_the_install_hint(user_home: Path) -> None:
    models = user_home / "models"
    models.mkdir()
    for name in ("s", "c", "b"):
        (models / f"{name}.gguf").touch()  # only looked for, never loaded
    path = user_home / "herd.toml"
    path.write_text(PROFILES)
    herd = ("--config", str(path), "launch")
    printed = run_herd(*herd, "codex", "coder", "--print-env", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "unset OPENAI_BASE_URL CODEX_HOME" in printed.stdout
    assert "export HERD_API_KEY=herd-local" in printed.stdout
    assert 'model = "coder"' in printed.stdout and "config.toml" in printed.stdout
    assert running_record() is None  # printing starts nothing

    bare = str(Path(sys.executable).parent)
    for name in ("opencode", "crush", "qwen", "aider"):
        missing = run_herd(*herd, name, "coder", PATH=bare)
        assert missing.returncode == 1, missing.stderr
        assert agent(name).install in missing.stderr
    unknown = run_herd(*herd, "gemni")
    assert unknown.returncode == 2 and "unknown agent 'gemni'" in unknown.stderr
    stray = run_herd(*herd, "opencode", "coder", "run", "hi")
    assert stray.returncode == 2 and "Got unexpected extra argument" in stray.stderr
    option = run_herd(*herd, "opencode", "--model", "x")
    assert option.returncode == 2 and "options go after `--`" in option.stderr


# -- the real agents, sandboxed, through the gateway ---------------------------------------


def activity(herd) -> list[dict]:
    """The gateway's requests as the management API lists them."""
    answer = httpx.get(f"{herd.server.api_url}/activity", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["records"]


@pytest.mark.parametrize(
    ("name", "endpoint"), [("opencode", "/v1/chat/completions"), ("codex", "/v1/responses")]
)
def test_real_agent_answers_through_the_gateway_in_the_sandbox(
    make_herd, user_home: Path, name: str, endpoint: str
) -> None:
    found = agent_bin_dir(name)
    require_sandbox()
    # The agents' system prompts and tool schemas make a 8k-17k-token first request (more
    # with the demo model's byte-level vocabulary): the model needs a long context.
    herd = make_herd('\n[models.long]\nfile = "dense.gguf"\nctx = 65536\nparallel = 1\n')
    project = user_home / "project"
    project.mkdir()
    result = run_herd(
        "--config", str(herd.path), "launch", name, "long", "--sandbox",
        "--", *agent(name).example,
        cwd=project, timeout=600, PATH=f"{found}:{os.environ['PATH']}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running without a sandbox" not in result.stderr
    served = [r for r in activity(herd) if r["endpoint"] == endpoint]
    assert served and all(r["model"] == "long" and r["status"] == 200 for r in served), served
    # Its sessions stayed in its own config dir, none in the user's home.
    assert (paths.state_dir() / "agents" / name).is_dir()
    assert (
        not (user_home / ".codex").exists() and not (user_home / ".local/share/opencode").exists()
    )
    assert (user_home / ".config/opencode/opencode.json").read_text() == '{"model": "cloud/x"}\n'

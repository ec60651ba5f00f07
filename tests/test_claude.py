"""`herd claude`: Claude Code's environment and config dir, the bubblewrap sandbox, the
Anthropic API through the gateway, and the real Claude Code CLI against a local model.

Nothing here reads or writes the real home directory: each test gets its own HOME (under
/var/tmp, not /tmp, because the sandbox gives Claude Code a private /tmp and a HOME there
would vanish inside it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import run_herd
from test_observability import metric_samples

from llamaherd import control
from llamaherd.agents import base, relay, sandbox
from llamaherd.agents import launch as claude_launch
from llamaherd.agents.claude import env, home
from llamaherd.agents.claude.agent import CLAUDE
from llamaherd.config import Config, load_config, parse_config
from llamaherd.daemon import routing as route
from llamaherd.daemon.record import running_record
from llamaherd.errors import ConfigError, HerdError

REPO = Path(__file__).resolve().parent.parent
# Where `make claude-code` installs Claude Code from the npm registry.
NPM_CLAUDE = REPO / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
IN_CI = os.environ.get("CI") == "true"


def claude_binary() -> Path:
    found = NPM_CLAUDE if NPM_CLAUDE.exists() else shutil.which("claude")
    if found is None:
        message = "no Claude Code: run `make claude-code` (npm install @anthropic-ai/claude-code)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def require_sandbox() -> None:
    """bwrap or socat missing in CI is a broken test setup (`make sandbox-tools`); bwrap
    that cannot create namespaces here (containers often forbid them) is a fact of the
    machine, reported as a skip."""
    reason = sandbox.unavailable_reason()
    if reason is None:
        return
    if IN_CI and (sandbox.bwrap_path() is None or relay.socat_path() is None):
        pytest.fail(reason)
    pytest.skip(f"the sandbox cannot run on this machine: {reason}")


@pytest.fixture
def user_home(monkeypatch: pytest.MonkeyPatch):
    """A private HOME with a planted SSH key and the user's normal ~/.claude."""
    path = Path(tempfile.mkdtemp(prefix="herd-home-", dir="/var/tmp"))
    (path / ".ssh").mkdir(mode=0o700)
    (path / ".ssh" / "id_test").write_text("PRIVATE KEY\n")
    (path / ".claude").mkdir()
    (path / ".claude" / "settings.json").write_text('{"model": "opus"}\n')
    (path / ".netrc").write_text("machine example.com password hunter2\n")
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


PROFILES = """
default_model = "small"
[models.small]
file = "s.gguf"
ctx = 4096
aliases = ["s"]
[models.coder]
file = "c.gguf"
ctx = 32768
[models.big]
file = "b.gguf"
ctx = 131072
"""


def profiles(claude: str = "") -> Config:
    return parse_config(PROFILES + claude, Path("/srv/herd.toml"), check_files=False)


# -- config and environment (no server) ---------------------------------------------------


def test_a_context_smaller_than_claude_codes_first_request_is_warned_about() -> None:
    config = profiles('[models.shared]\nfile = "c.gguf"\nctx = 65536\nparallel = 4\n')
    small = claude_launch.context_warning(CLAUDE, config, "s")
    assert small is not None and "small has a context of 4096 tokens" in small
    assert "about 21k tokens" in small and "ctx = 32768 or more in [models.small]" in small
    shared = claude_launch.context_warning(CLAUDE, config, "shared")
    assert shared is not None and "16384 tokens per slot" in shared
    assert claude_launch.context_warning(CLAUDE, config, "coder") is None
    assert claude_launch.context_warning(CLAUDE, config, "big") is None


def test_claude_table_maps_model_classes_to_profiles_by_id_or_alias() -> None:
    config = profiles('[claude]\nmain = "coder"\nhaiku = "s"\n[claude.route]\nthinking = "big"\n')
    assert config.claude.haiku == "small"  # the alias became the id
    assert config.claude.route.thinking == "big"
    variables = env.claude_env(config, env.main_model(config, None, running="big"))
    assert variables["ANTHROPIC_MODEL"] == "coder"  # [claude] main wins over the running one
    assert variables["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "coder"
    assert variables["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "coder"
    assert variables["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "small"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            '[claude]\nhaiku = "smal"\n',
            "claude.haiku: 'smal' is not a profile (did you mean 'small'?",
        ),
        ('[claude.route]\nsmall = "x"\n', "claude.route.small: 'x' is not a profile"),
        ('[claude]\nopsu = "big"\n', "unknown key 'opsu' (did you mean 'opus'?)"),
        ("[claude]\napi_timeout_ms = 0\n", "claude.api_timeout_ms: invalid value 0"),
    ],
)
def test_claude_table_mistakes_are_one_line(table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        profiles(table)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_environment_points_claude_code_at_the_gateway_and_nowhere_else(
    monkeypatch: pytest.MonkeyPatch, user_home: Path
) -> None:
    monkeypatch.delenv("HERD_API_KEY", raising=False)
    config = profiles()
    variables = env.claude_env(config, env.main_model(config, None, running=None))
    assert variables["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"
    assert variables["ANTHROPIC_AUTH_TOKEN"] == env.PLACEHOLDER_TOKEN
    assert variables["ANTHROPIC_MODEL"] == "small"  # no daemon: default_model
    assert variables["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    assert variables["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert int(variables["API_TIMEOUT_MS"]) >= 600_000
    assert variables["CLAUDE_CONFIG_DIR"] == str(user_home / ".claude-local")

    users = {"ANTHROPIC_API_KEY": "sk-ant-real", "PATH": "/usr/bin", "ANTHROPIC_MODEL": "x"}
    full = base.full_environment(CLAUDE, users, variables)
    assert "ANTHROPIC_API_KEY" not in full  # the cloud key never reaches the gateway
    assert full["PATH"] == "/usr/bin" and full["ANTHROPIC_MODEL"] == "small"

    routed = env.claude_env(config, "small", routed=True)
    assert routed["ANTHROPIC_MODEL"] == route.AUTO
    assert routed["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == route.AUTO_HAIKU

    monkeypatch.setenv("HERD_API_KEY", "s3cret")
    assert env.claude_env(config, "small")["ANTHROPIC_AUTH_TOKEN"] == "s3cret"


def test_config_dir_is_seeded_once_and_the_users_claude_is_untouched(user_home: Path) -> None:
    users_claude = sorted((p, p.stat().st_mtime_ns) for p in (user_home / ".claude").rglob("*"))
    variables = claude_launch.herd_environment(CLAUDE, profiles(), "small")
    local = user_home / ".claude-local"
    assert variables["CLAUDE_CONFIG_DIR"] == str(local)
    assert stat.S_IMODE(local.stat().st_mode) == 0o700
    settings = json.loads((local / "settings.json").read_text())
    assert settings["sandbox"]["enabled"] is True  # Claude Code's own bash sandbox
    assert "Read(~/.ssh/**)" in settings["permissions"]["deny"]
    assert "local model" in (local / "CLAUDE.md").read_text()
    assert json.loads((local / ".claude.json").read_text())["hasCompletedOnboarding"] is True

    (local / "CLAUDE.md").write_text("my own rules\n")
    assert home.seed(local) == []  # a second start writes nothing
    assert (local / "CLAUDE.md").read_text() == "my own rules\n"
    assert sorted((p, p.stat().st_mtime_ns) for p in (user_home / ".claude").rglob("*")) == (
        users_claude
    )


def test_seeded_settings_give_the_originals_bash_timeouts_and_the_ide_link(
    user_home: Path,
) -> None:
    # The original claude-local's settings.json gave local models 5 minutes per bash
    # command (10 at most) and linked ide/ to ~/.claude/ide for VS Code's /ide.
    local = Path(claude_launch.herd_environment(CLAUDE, profiles(), "small")["CLAUDE_CONFIG_DIR"])
    variables = json.loads((local / "settings.json").read_text())["env"]
    assert variables["BASH_DEFAULT_TIMEOUT_MS"] == "300000"
    assert variables["BASH_MAX_TIMEOUT_MS"] == "600000"
    ide = local / "ide"
    assert ide.is_symlink() and ide.readlink() == user_home / ".claude" / "ide"
    assert not (user_home / ".claude" / "ide").exists()  # nothing written in ~/.claude
    (user_home / ".claude" / "ide").mkdir()
    (user_home / ".claude" / "ide" / "41234.lock").write_text("{}")  # as the extension does
    assert [p.name for p in ide.iterdir()] == ["41234.lock"]
    ide.unlink()
    ide.mkdir()  # the user's own folder is left alone
    assert home.seed(local) == [] and not ide.is_symlink()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bwrap and socat: Linux only")
def test_claude_codes_own_sandbox_without_socat_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, user_home: Path
) -> None:
    path = user_home / "herd.toml"
    path.write_text(PROFILES + f'[claude]\nbinary = "{sys.executable}"\n')
    config = load_config(path, check_files=False)
    monkeypatch.setattr(relay, "socat_path", lambda: None)
    # herd's own sandbox off: Claude Code's (on in the seeded settings) still needs socat.
    with pytest.raises(HerdError) as refused:
        claude_launch.prepare(CLAUDE, config, "small", mode="off")
    message = str(refused.value)
    settings = user_home / ".claude-local" / "settings.json"
    assert "Claude Code's own bash sandbox is on" in message and str(settings) in message
    assert "sudo apt install socat" in message and '"enabled": false' in message
    assert "apt install bubblewrap" not in message  # only what is missing

    chosen = json.loads(settings.read_text())
    chosen["sandbox"]["enabled"] = False
    settings.write_text(json.dumps(chosen))
    plan = claude_launch.prepare(CLAUDE, config, "small", mode="off", args=["-p", "hi"])
    assert plan.argv == [sys.executable, "-p", "hi"]


def test_route_picks_a_profile_from_the_request_itself() -> None:
    config = profiles(
        '[claude.route]\nsmall = "s"\nthinking = "coder"\nlong_context_tokens = 1000\n'
    )
    short = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    thinking = json.dumps({"messages": [], "thinking": {"type": "enabled"}}).encode()
    long = json.dumps({"messages": [{"role": "user", "content": "x" * 8000}]}).encode()
    assert route.choose(route.AUTO, short, config) is None  # the model running now
    assert route.choose(route.AUTO_HAIKU, short, config) == "small"
    assert route.choose(route.AUTO, thinking, config) == "coder"
    assert route.choose(route.AUTO_HAIKU, long, config) == "big"  # largest ctx wins
    assert route.choose(route.AUTO, long, profiles()) is None  # under the default threshold
    assert not route.is_auto("claude-sonnet-4-5") and not route.is_auto(None)


# -- the sandbox --------------------------------------------------------------------------


def test_bwrap_argv_binds_project_and_config_dir_and_hides_credentials(user_home: Path) -> None:
    project = user_home / "project"
    config_dir = user_home / ".claude-local"
    argv = sandbox.wrap(
        ["claude", "-p", "hi"],
        project=project,
        writable=[config_dir],
        home=user_home,
        runtime_dir=None,
        bwrap="/usr/bin/bwrap",
    )
    text = " ".join(argv)
    assert argv[0] == "/usr/bin/bwrap"
    assert argv[argv.index("--") :] == ["--", "claude", "-p", "hi"]
    assert "--ro-bind / /" in text and "--tmpfs /tmp" in text
    assert f"--bind {project} {project}" in text and f"--bind {config_dir} {config_dir}" in text
    assert f"--tmpfs {user_home / '.ssh'}" in text
    assert f"--tmpfs {user_home / '.claude'}" in text
    assert f"--ro-bind /dev/null {user_home / '.netrc'}" in text
    assert str(user_home / ".aws") not in text  # nothing to hide: no mount point made
    assert "--unshare-net" in text  # the gateway comes in through a relay only
    assert argv[argv.index("--chdir") + 1] == str(project)
    # Hidden after the binds, so a project at ~ still has its ~/.ssh hidden ...
    assert text.index("--tmpfs " + str(user_home / ".ssh")) > text.index("--bind")
    # ... but a config dir the user put at ~/.claude stays writable.
    own = sandbox.wrap(
        ["claude"], project=project, writable=[user_home / ".claude"], home=user_home
    )
    assert f"--tmpfs {user_home / '.claude'}" not in " ".join(own)


def test_a_program_installed_under_tmp_stays_visible_in_the_private_tmp(user_home: Path) -> None:
    installed = Path(tempfile.mkdtemp(dir="/tmp"))  # e.g. a checkout with its venv in /tmp
    program = installed / "venv" / "bin" / "claude"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    try:
        argv = sandbox.wrap([str(program)], project=user_home, home=user_home)
    finally:
        shutil.rmtree(installed)
    text = " ".join(argv)
    # read-only, and mounted over the private /tmp (so after it)
    assert f"--ro-bind {installed} {installed}" in text
    assert text.index(f"--ro-bind {installed}") > text.index("--tmpfs /tmp")


# -- the Anthropic API through the gateway, real llama-server -------------------------------

TOOLS = [
    {
        "name": "Read",
        "description": "Read a file from the local filesystem.",
        "input_schema": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"],
        },
    }
]


def claude_code_request(model: str, **extra: object) -> dict:
    """The shape Claude Code sends: system blocks, tools, thinking, streaming."""
    return {
        "model": model,
        "max_tokens": 16,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code, a coding assistant."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Read README.md"}]}],
        "tools": TOOLS,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "herd-test"},
        **extra,
    }


def stream_events(url: str, request: dict) -> tuple[httpx.Headers, list[dict]]:
    """POST a streaming /v1/messages request; the response headers and its SSE events."""
    events = []
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "herd-local"}
    with httpx.stream(
        "POST", f"{url}/v1/messages", json=request, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
        return response.headers, events


def test_claude_code_requests_stream_through_the_gateway_and_swap_models(make_herd) -> None:
    herd = make_herd('\n[claude.route]\nsmall = "moe"\n')
    control.up(herd, "dense")
    gateway = herd.server.public_url

    headers, events = stream_events(gateway, claude_code_request("dense"))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert headers["x-herd-model"] == "dense"

    counted = httpx.post(
        f"{gateway}/v1/messages/count_tokens",
        json={k: v for k, v in claude_code_request("dense").items() if k != "stream"},
        timeout=60,
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 10

    # `/model moe` inside Claude Code: the next request names another profile.
    headers, events = stream_events(gateway, claude_code_request("moe"))
    assert headers["x-herd-model"] == "moe" and events[-1]["type"] == "message_stop"
    assert control.connect(herd).status().model == "moe"

    # With --route, the running model answers `auto`; a haiku-class call goes to `small`.
    control.up(herd, "dense")
    headers, _ = stream_events(gateway, claude_code_request(route.AUTO, thinking=None))
    assert headers["x-herd-model"] == "dense"
    headers, _ = stream_events(gateway, claude_code_request(route.AUTO_HAIKU, thinking=None))
    assert headers["x-herd-model"] == "moe"


# -- the CLI and the real Claude Code ------------------------------------------------------


def test_print_env_and_missing_claude_binary(user_home: Path) -> None:
    models = user_home / "models"
    models.mkdir()
    for name in ("s", "c", "b"):
        (models / f"{name}.gguf").touch()  # only looked for, never loaded
    path = user_home / "herd.toml"
    path.write_text(PROFILES)
    result = run_herd("--config", str(path), "claude", "coder", "--print-env")
    assert result.returncode == 0, result.stderr
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:8080" in result.stdout
    assert "export ANTHROPIC_MODEL=coder" in result.stdout
    assert "unset ANTHROPIC_API_KEY" in result.stdout
    assert (user_home / ".claude-local" / "settings.json").exists()
    assert running_record() is None  # printing starts nothing

    no_claude = run_herd("--config", str(path), "claude", PATH=str(Path(sys.executable).parent))
    assert no_claude.returncode == 1
    assert "npm install -g @anthropic-ai/claude-code" in no_claude.stderr
    unknown = run_herd("--config", str(path), "claude", "nope")
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
    stray = run_herd("--config", str(path), "claude", "coder", "-p", "hi")
    assert stray.returncode == 2 and "options go after `--`" in stray.stderr


def test_real_claude_code_answers_in_print_mode_through_the_gateway(
    make_herd, user_home: Path
) -> None:
    binary = claude_binary()
    # Claude Code's system prompt and tool schemas make a ~15k-token first request (more
    # with the demo model's byte-level vocabulary): the model needs a long context.
    herd = make_herd(
        "\n[models.long]\n"
        'file = "dense.gguf"\n'
        "ctx = 65536\n"
        "parallel = 1\n"
        f'\n[claude]\nbinary = "{binary}"\n'
    )
    project = user_home / "project"
    project.mkdir()
    sandboxed = sandbox.unavailable_reason() is None
    key = ("herd_endpoint_requests_total", (("endpoint", "/v1/messages"), ("model", "long")))

    def ask(*options: str) -> dict:
        result = run_herd(
            "--config", str(herd.path), "claude", *options,
            "--", "-p", "Say hello", "--output-format", "json",
            cwd=project,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert ("running without a sandbox" not in result.stderr) == sandboxed
        answer = json.loads(result.stdout)
        assert answer["type"] == "result" and answer["is_error"] is False, answer
        assert isinstance(answer["result"], str)
        return answer

    ask("long")
    served = metric_samples(herd.server.api_url)[key]
    assert served >= 1
    # Every model class is `auto`: the running model answers; in the strict sandbox when
    # there is one (an empty home but for the project and ~/.claude-local).
    ask("long", "--route", *(["--strict"] if sandboxed else []))
    assert metric_samples(herd.server.api_url)[key] > served
    # Claude Code kept to its own config dir: the user's ~/.claude is as it was.
    assert sorted(p.name for p in (user_home / ".claude").iterdir()) == ["settings.json"]
    assert (user_home / ".claude-local" / "settings.json").exists()


def test_sandbox_refused_clearly_when_asked_for_and_unavailable(
    monkeypatch: pytest.MonkeyPatch, user_home: Path
) -> None:
    path = user_home / "herd.toml"
    # Only the binary's path matters here; nothing is run.
    path.write_text(PROFILES + f'[claude]\nbinary = "{sys.executable}"\n')
    config = load_config(path, check_files=False)
    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bwrap not found; install it")
    for mode in ("on", "strict"):
        with pytest.raises(HerdError, match=f"sandbox '{mode}'.*: bwrap not found"):
            claude_launch.prepare(CLAUDE, config, "small", mode=mode)
    plan = claude_launch.prepare(CLAUDE, config, "small", mode="auto", args=["-p", "hi"])
    assert not plan.sandboxed and "running without a sandbox" in (plan.note or "")
    assert plan.argv == [sys.executable, "-p", "hi"]

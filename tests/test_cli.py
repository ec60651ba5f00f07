"""The herd command as a user runs it: exit codes, one-line errors, --json, --help."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import run_herd, write_config
from inprocess import herd

from llamaherd import cli, control
from llamaherd.cli import lifecycle
from llamaherd.config import load_config
from llamaherd.runtime import process

COMMANDS = [
    "models",
    "up",
    "switch",
    "down",
    "status",
    "logs",
    "serve",
    "demo",
    "build",
    "doctor",
    "reload",
    "top",
    "dash",
    "claude",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run_herd(command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout


@pytest.fixture
def config_path(tmp_path: Path, model_files: Path, llama_server: Path) -> Path:
    return write_config(tmp_path, model_files, llama_server)


def test_models_json_lists_profiles_with_state(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"dense", "moe", "broken"}
    assert rows["dense"]["state"] == "stopped"
    assert rows["dense"]["aliases"] == ["d"]
    assert rows["dense"]["speed_tps"] is None


def test_models_table_shows_dash_for_unmeasured_speed(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "models")
    assert result.returncode == 0
    assert "Tiny dense" in result.stdout and "—" in result.stdout


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "herd.toml"
    path.write_text('[models.x]\nfile = "x.gguf"\ntemprature = 0.5\n')
    result = run_herd("--config", str(path), "models")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "temprature" in lines[0] and "temperature" in lines[0]


def test_up_without_id_and_without_terminal_names_the_ids(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "up")
    assert result.returncode == 2
    assert "dense" in result.stderr and "moe" in result.stderr


def test_up_unknown_model_is_exit_2(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "up", "nope")
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr


def missing_profile(directory: Path) -> str:
    """A profile whose GGUF is not (yet) on disk, as for a model still downloading."""
    return f'\n[models.late]\nfile = "{directory / "late.gguf"}"\nctx = 2048\n'


def test_a_missing_gguf_is_a_state_and_up_says_where_to_put_it(
    tmp_path: Path, model_files: Path
) -> None:
    # Issue 14: one missing GGUF made every command fail with exit 2.
    path = write_config(tmp_path, model_files, Path("llama-server"), missing_profile(tmp_path))
    listed = run_herd("--config", str(path), "models", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {row["id"]: row["state"] for row in json.loads(listed.stdout)}
    assert states == {"dense": "stopped", "moe": "stopped", "broken": "stopped", "late": "missing"}
    assert "missing" in run_herd("--config", str(path), "models").stdout

    up = run_herd("--config", str(path), "up", "late", "--no-dashboard")
    assert up.returncode == 2
    lines = [line for line in up.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, up.stderr
    assert f"model file not found: {tmp_path / 'late.gguf'}" in lines[0]
    assert f"models_dir is {model_files}; download the GGUF there" in lines[0]
    assert not control.connect(load_config(path)).alive(), "no daemon was started for it"


def test_a_daemon_with_a_missing_gguf_serves_the_others_and_notices_the_file(
    daemon, tmp_path: Path, model_files: Path
) -> None:
    config = daemon(missing_profile(tmp_path))
    api, chat = config.server.api_url, f"{config.server.public_url}/v1/chat/completions"
    hello = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    def states() -> dict[str, str]:
        return {m["id"]: m["state"] for m in httpx.get(f"{api}/models").json()["models"]}

    assert states()["late"] == "missing"
    switched = httpx.post(f"{api}/switch", json={"model": "late"}, timeout=30)
    assert switched.status_code == 404
    assert "model file not found" in switched.json()["error"]
    asked = httpx.post(chat, json={"model": "late", **hello}, timeout=30)
    assert asked.status_code == 404
    assert "model file not found" in asked.json()["error"]["message"]
    assert run_herd("--config", str(config.path), "switch", "late").returncode == 2

    served = httpx.post(chat, json={"model": "dense", **hello}, timeout=120)
    assert served.status_code == 200 and served.headers["x-herd-model"] == "dense"

    shutil.copy(model_files / "dense.gguf", tmp_path / "late.gguf")  # the download ends
    assert states()["late"] == "stopped"
    served = httpx.post(chat, json={"model": "late", **hello}, timeout=120)
    assert served.status_code == 200 and served.headers["x-herd-model"] == "late"
    assert states()["late"] == "ready"


def test_status_without_daemon_says_how_to_start(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "status")
    assert result.returncode == 1
    assert "herd up" in result.stdout


def test_up_status_logs_switch_down_through_the_cli(config_path: Path) -> None:
    config = ["--config", str(config_path)]
    try:
        up = run_herd(*config, "up", "dense", "--no-dashboard")
        assert up.returncode == 0, up.stderr
        assert "dense" in up.stdout and "serving  http://127.0.0.1:" in up.stdout

        status = json.loads(run_herd(*config, "status", "--json").stdout)
        assert status["model"] == "dense" and status["state"] == "ready"

        logs = run_herd(*config, "logs", "-n", "5")
        assert logs.returncode == 0 and 0 < len(logs.stdout.splitlines()) <= 5

        failed = run_herd(*config, "switch", "broken")
        assert failed.returncode == 1
        assert "restored the previous model: dense" in failed.stderr

        down = run_herd(*config, "down", "--all")
        assert down.returncode == 0 and "stopped dense" in down.stdout
        assert run_herd(*config, "status").returncode == 1
    finally:
        run_herd(*config, "down", "--all")


def test_synthetic_demo_serves_and_answers_a_chat(llama_server: Path) -> None:
    env = {"HERD_API_PORT": str(process.free_port()), "HERD_PORT": str(process.free_port())}
    try:
        result = run_herd("demo", "--synthetic", "--json", timeout=300, **env)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["status"]["model"] == "demo-dense"
        assert answer["chat"]["choices"][0]["message"]["role"] == "assistant"
        assert answer["chat"]["usage"]["completion_tokens"] > 0

        # No herd.toml anywhere: commands use the running daemon's (the demo's) config.
        models = run_herd("models", "--json", **env)
        assert models.returncode == 0, models.stderr
        states = {row["id"]: row["state"] for row in json.loads(models.stdout)}
        assert states == {"demo-dense": "ready", "demo-moe": "stopped"}
    finally:
        run_herd("down", "--all", **env)


def test_doctor_reports_the_llama_server_it_would_use(config_path: Path) -> None:
    result = run_herd("--config", str(config_path), "doctor", "--json")
    report = json.loads(result.stdout)
    assert report["config"]["ok"] and report["config"]["profiles"] == 3
    assert report["llama_server"]["origin"] == "config"
    assert "version" in report["llama_server"]["version"]
    assert report["llama_server"]["features"]["anthropic_messages"] is True
    assert report["gpus"]["gpus"] == []  # no GPU on these machines: an empty list, no crash
    assert result.returncode == 0, result.stdout


def test_herd_models_and_the_api_describe_a_profile_alike(herd) -> None:
    # One description (profiles.rows): the CLI's rows are the daemon's rows.
    assert control.up(herd, "dense").ok
    result = run_herd("--config", str(herd.path), "models", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == control.connect(herd).call("GET", "/models")["models"]
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["dense"]["state"] == "ready" and rows["moe"]["state"] == "stopped"
    assert rows["dense"]["file"] == str(herd.models["dense"].file)


def test_up_without_id_in_a_terminal_offers_a_menu(herd, monkeypatch) -> None:
    monkeypatch.setattr(lifecycle, "is_terminal", lambda: True)
    result = CliRunner().invoke(cli.cli, ["--config", str(herd.path), "up"], input="2\n")
    assert result.exit_code == 0, result.output
    assert "Tiny dense" in result.output and "Tiny MoE" in result.output  # the menu
    assert control.connect(herd).status().model == "moe"


@pytest.mark.parametrize("command", [["serve"], ["up", "dense"]])
def test_unusable_state_dir_is_one_line_saying_how_to_fix_it(
    tmp_path: Path,
    model_files: Path,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Below a regular file: not even root can create it (chmod would not stop root).
    (tmp_path / "afile").write_text("")
    state = tmp_path / "afile" / "state"
    monkeypatch.setenv("HERD_STATE_DIR", str(state))
    config = write_config(tmp_path, model_files, Path("llama-server"))
    code, out, err = herd(capsys, monkeypatch, "--config", str(config), *command)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(state) in err and "HERD_STATE_DIR" in err and "permissions" in err
    assert "management API on" not in err


def test_serve_announces_the_api_only_once_its_port_is_bound(
    tmp_path: Path,
    model_files: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        config = tmp_path / "herd.toml"
        # All in containers: no llama-server needed to get as far as binding the ports.
        config.write_text(
            f'models_dir = "{model_files}"\nruntime = "docker"\n\n[server]\n'
            f"port = {process.free_port()}\napi_port = {api_port}\n\n"
            '[models.dense]\nfile = "dense.gguf"\n'
        )
        code, out, err = herd(capsys, monkeypatch, "--config", str(config), "serve")
    assert code == 1
    assert f"127.0.0.1:{api_port} is taken" in err
    assert "management API on" not in out + err

"""`herd` starts fast: the everyday commands never import the daemon's or the planner's
libraries, and `herd --help` lists every command without importing any command module.

The import graph is asserted, not the time (benchmarks/cli_startup.py measures that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from llamaherd import cli
from llamaherd.runtime.process import free_port

# What made every command take over a second before it did anything.
HEAVY = [
    "fastapi",
    "starlette",
    "uvicorn",
    "aiohttp",
    "httpx",
    "numpy",
    "gguf",
    "textual",
    "llamaherd.daemon.supervisor",
    "llamaherd.daemon.serve",
    "llamaherd.gguf.plan",
]

# Runs `herd ARGS` through the console script's entry point in a fresh interpreter, then
# reports what it printed, its exit code and which heavy modules it loaded.
PROBE = """
import contextlib, io, json, sys
args, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["herd", *args]
out, err = io.StringIO(), io.StringIO()
code = 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    from llamaherd.cli import main
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
heavy = [name for name in watched if name in sys.modules]
commands = sorted(m for m in sys.modules if m.startswith("llamaherd.cli."))
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                  "heavy": heavy, "commands": commands}))
"""


@pytest.fixture
def small_herd(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with a two-profile herd.toml and no daemon running."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("small", "large"):
        (models / f"{name}.gguf").write_bytes(b"")
    config = tmp_path / "herd.toml"
    config.write_text(
        f'models_dir = "{models}"\n\n[server]\nport = {free_port()}\n'
        f"api_port = {free_port()}\n\n"
        '[models.small]\nname = "Small"\nfile = "small.gguf"\n\n'
        '[models.large]\nname = "Large"\nfile = "large.gguf"\n'
    )
    return {"HERD_CONFIG": str(config), "HERD_STATE_DIR": str(tmp_path / "state")}


def probe(
    args: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    watched: list[str] = HEAVY,
) -> dict:
    for name in ("HERD_URL", "HERD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(watched)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "code", "says", "module"),
    [
        (["--help"], 0, "Commands:", None),
        (["status"], 1, "no herd daemon at", "llamaherd.cli.lifecycle"),
        (["models"], 0, "Small", "llamaherd.cli.lifecycle"),
        (["switch", "small"], 1, "no herd daemon answers", "llamaherd.cli.lifecycle"),
    ],
)
def test_everyday_commands_import_nothing_heavy(
    args: list[str],
    code: int,
    says: str,
    module: str | None,
    small_herd: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = probe(args, small_herd, monkeypatch)
    # The command really ran (a crash before its work would import nothing either).
    assert ran["code"] == code, ran
    assert says in ran["out"] + ran["err"], ran
    assert ran["heavy"] == [], f"herd {' '.join(args)} imported {ran['heavy']}"
    families = {f"llamaherd.cli.{where.split(':')[0]}" for where, _ in cli.COMMANDS.values()}
    loaded = [name for name in ran["commands"] if name in families]
    assert loaded == ([module] if module else []), loaded  # only the one that runs


# What remained of a second's start after the heavy libraries went: pydantic, and building
# the config's and the API answers' model classes.
MODEL_CLASSES = [
    "pydantic",
    "llamaherd.config.schema",
    "llamaherd.config.load",
    "llamaherd.schema.common",
    "llamaherd.schema.models",
    "llamaherd.schema.status",
    "llamaherd.schema.system",
]


@pytest.mark.parametrize(
    ("args", "says"),
    [(["status"], "no herd daemon at"), (["switch", "small"], "no herd daemon answers")],
)
def test_commands_that_only_talk_to_the_daemon_build_no_model_class(
    args: list[str], says: str, small_herd: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # They read herd.toml's [server] alone, and parse an answer only when one arrives.
    ran = probe(args, small_herd, monkeypatch, MODEL_CLASSES)
    assert ran["code"] == 1 and says in ran["out"] + ran["err"], ran
    assert ran["heavy"] == [], f"herd {' '.join(args)} imported {ran['heavy']}"


def test_models_validates_a_herd_toml_once_until_it_changes(
    small_herd: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first listing validates the profiles; an unchanged file is then listed from
    # what that validation kept, building no model class at all.
    first = probe(["models"], small_herd, monkeypatch, MODEL_CLASSES)
    assert first["code"] == 0 and "Large" in first["out"], first
    assert "llamaherd.config.schema" in first["heavy"], first["heavy"]
    again = probe(["models", "--json"], small_herd, monkeypatch, MODEL_CLASSES)
    assert again["code"] == 0 and again["heavy"] == [], again["heavy"]
    assert [row["name"] for row in json.loads(again["out"])] == ["Small", "Large"]

    # Any change to the file is validated again: a new name shows, a typo is an error.
    path = Path(small_herd["HERD_CONFIG"])
    path.write_text(path.read_text().replace('"Large"', '"Larger"'))
    renamed = probe(["models"], small_herd, monkeypatch, MODEL_CLASSES)
    assert "Larger" in renamed["out"] and "llamaherd.config.schema" in renamed["heavy"]
    path.write_text(path.read_text().replace("name =", "nmae =", 1))
    for _ in range(2):  # a broken file is never remembered as valid
        typo = probe(["models"], small_herd, monkeypatch, MODEL_CLASSES)
        assert typo["code"] == 2 and "nmae" in typo["err"], typo


def test_models_notices_a_model_file_that_became_a_directory(
    small_herd: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert probe(["models"], small_herd, monkeypatch)["code"] == 0
    model = Path(small_herd["HERD_CONFIG"]).parent / "models" / "large.gguf"
    model.unlink()
    gone = probe(["models", "--json"], small_herd, monkeypatch)
    assert [row["state"] for row in json.loads(gone["out"])] == ["stopped", "missing"]
    model.mkdir()
    ran = probe(["models"], small_herd, monkeypatch)
    assert ran["code"] == 2 and "is a directory" in ran["err"], ran


def write_server(small_herd: dict[str, str], server: str, *, profile: str = "") -> Path:
    """small_herd's herd.toml with its [server] table replaced by `server`."""
    path = Path(small_herd["HERD_CONFIG"])
    text = path.read_text()
    models = text[text.index("[models.") :]
    path.write_text(f"{server}\n{profile}{models}")
    return path


def herd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HERD_URL", "HERD_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "llamaherd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**clean, **env},
    )


def test_status_finds_the_api_port_from_the_file_and_the_variable(
    small_herd: dict[str, str],
) -> None:
    port, moved = free_port(), free_port()
    write_server(small_herd, f'[server]\nhost = "0.0.0.0"\napi_key = "k"\napi_port = {port}\n')
    said = herd("status", env=small_herd)
    assert said.returncode == 1 and f"no herd daemon at http://127.0.0.1:{port};" in said.stdout
    said = herd("status", env={**small_herd, "HERD_API_PORT": str(moved)})
    assert f"no herd daemon at http://127.0.0.1:{moved};" in said.stdout


def test_a_bad_server_table_named_with_config_is_the_same_error_as_for_models(
    small_herd: dict[str, str],
) -> None:
    path = write_server(small_herd, '[server]\napi_port = "8081"\n')
    env = {"HERD_STATE_DIR": small_herd["HERD_STATE_DIR"]}
    models = herd("--config", str(path), "models", env=env)
    assert models.returncode == 2 and "server.api_port" in models.stderr, models.stderr
    for args in (["status"], ["switch", "small"]):
        said = herd("--config", str(path), *args, env=env)
        assert (said.returncode, said.stderr) == (2, models.stderr)


def test_a_mistake_in_a_profile_does_not_hide_the_daemon_from_status(
    small_herd: dict[str, str],
) -> None:
    # The commands that only talk to the daemon read [server] alone: a profile being
    # edited (here with a typo) is reported by the commands that read profiles.
    port = free_port()
    typo = '[models.typo]\nfile = "x.gguf"\ntemprature = 0.5\n\n'
    path = write_server(small_herd, f"[server]\napi_port = {port}\n", profile=typo)
    assert herd("--config", str(path), "models", env=small_herd).returncode == 2
    said = herd("--config", str(path), "status", env=small_herd)
    assert said.returncode == 1 and f"no herd daemon at http://127.0.0.1:{port};" in said.stdout


def test_help_lists_every_command_as_click_would_with_all_of_them_loaded() -> None:
    eager = click.Group(
        name=cli.cli.name,
        params=cli.cli.params,
        help=cli.cli.help,
        context_settings=cli.cli.context_settings,
        commands={name: cli.cli.get_command(click.Context(cli.cli), name) for name in cli.COMMANDS},
    )
    for width in (60, 80, 120):
        # The context settings as `herd` runs (-h too): click caches a command's help
        # option from the first context that asks, so every context must agree.
        sizes = {"info_name": "herd", "max_content_width": width, "terminal_width": width}
        sizes |= cli.cli.context_settings
        lazy_help = cli.cli.get_help(click.Context(cli.cli, **sizes))
        assert lazy_help == eager.get_help(click.Context(eager, **sizes))
        assert all(f"\n  {name} " in lazy_help for name in cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_the_table_names_each_command_and_its_own_summary(name: str) -> None:
    command = cli.cli.get_command(click.Context(cli.cli), name)
    assert isinstance(command, click.Command) and command.name == name
    summary = cli.COMMANDS[name][1]
    full = click.Command(name, help=summary).get_short_help_str(limit=1000)
    assert command.get_short_help_str(limit=1000) == full


def test_an_unknown_command_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["herd", "stauts"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert "No such command 'stauts'" in capsys.readouterr().err

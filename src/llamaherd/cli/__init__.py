"""The `herd` command: the root group, the exit codes, and a table of the commands.

Exit codes: 0 ok, 1 failure, 2 bad usage or bad config. Errors are one line, no traceback.

Each command lives in a module of this package (one per family) that is imported only
when that command runs, so `herd --help` or `herd status` does not pay for FastAPI, numpy
or Textual: the table below names each command's module and its one-line help.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from llamaherd import __version__
from llamaherd.errors import HerdError

if TYPE_CHECKING:
    from rich.console import Console

# name -> ("module:function" in this package, the help `herd --help` lists). The summary
# is the command's docstring opening; tests/test_cli_imports.py checks they agree.
COMMANDS: dict[str, tuple[str, str]] = {
    "activity": (
        "activity:activity",
        "Show the gateway's requests: model, status, tokens, waits and speeds.",
    ),
    "add": (
        "models:add_command",
        "Add a model: SOURCE is a .gguf file or a Hugging Face REPO[:QUANT] (downloaded "
        "into models_dir).",
    ),
    "bench": (
        "bench:bench",
        "Measure speed and HumanEval+ quality; every result is kept (state dir, SQLite) and "
        "`herd bench report` turns them into REPORT.md with charts.",
    ),
    "build": (
        "provision:build_command",
        "Build llama-server (and llama-bench, rpc-server) into herd's cache, or an image.",
    ),
    "cache": (
        "cache:cache",
        "List or clear the prompt caches saved when models were swapped out (docs/kv-keep.md).",
    ),
    "claude": (
        "agents:claude_command",
        "Run Claude Code on the local models: herd claude [ID] [-- CLAUDE ARGS].",
    ),
    "compose": (
        "provision:compose_command",
        "Write docker-compose.yml and .env that serve MODEL with `docker compose up`.",
    ),
    "dash": ("lifecycle:dash", "The live dashboard: model, log, GPUs, system."),
    "demo": (
        "lifecycle:demo",
        "Serve a small real model (fetched once) and show it answering a question.",
    ),
    "doctor": (
        "provision:doctor_command",
        "Check the llama-server, GPUs, ports and config herd would use.",
    ),
    "down": (
        "lifecycle:down",
        "Stop the running models (or only MODEL); with --all, the daemon too.",
    ),
    "import": (
        "migrate:import_command",
        "Write profiles from a models.conf, a llama-swap config.yaml or a llama.cpp preset INI.",
    ),
    "inspect": (
        "models:inspect_command",
        "Show what a GGUF file holds (header only; split files: any part).",
    ),
    "launch": (
        "agents:launch_command",
        "Run a coding agent on the local models: herd launch AGENT [ID] [-- AGENT ARGS].",
    ),
    "logs": ("lifecycle:logs", "Print a running model's llama-server log."),
    "models": (
        "lifecycle:models",
        "List the model profiles, with their state when the daemon runs.",
    ),
    "plan": (
        "models:plan_command",
        "Memory per device for FILE, and the best placement for the GPUs given.",
    ),
    "reload": (
        "lifecycle:reload",
        "Make the daemon re-read its herd.toml (a bad file is refused; the old one stays).",
    ),
    "serve": (
        "lifecycle:serve",
        "Run the daemon in the foreground (Ctrl-C stops it and its models).",
    ),
    "status": (
        "lifecycle:status",
        "Show the daemon, the running model and where it is served.",
    ),
    "switch": (
        "lifecycle:switch",
        "Switch the running daemon to MODEL; on failure the previous model is restored.",
    ),
    "top": (
        "lifecycle:top_command",
        "One plain-text snapshot: models, tokens/s, GPUs (VRAM, util, temp), CPU, RAM.",
    ),
    "up": (
        "lifecycle:up",
        "Start MODEL (id or alias), starting the daemon in the background if needed.",
    ),
    "worker": (
        "provision:worker",
        "Run llama.cpp's rpc-server: lend this machine's GPUs to a herd on another machine.",
    ),
}


class LazyGroup(click.Group):
    """click's lazy group: a command's module is imported when that command runs (or
    its own --help is asked for); the listing comes from COMMANDS alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name][0].split(":")
        command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        assert isinstance(command, click.Command), COMMANDS[name]
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own layout, from the summaries: listing imports no command module.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="herd.toml to use (default: $HERD_CONFIG, ./herd.toml, user config dir).",
)
@click.version_option(__version__, prog_name="herd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """llamaherd: run local LLMs with llama.cpp, one command to start or switch a model."""
    ctx.obj = {"config": config_path}


def main() -> None:
    # pydantic looks for plugins in every installed package's entry points, a fifth of
    # `herd models`' start-up; herd uses none (an explicit setting is kept).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _error_console().print("aborted")
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(2 if isinstance(error, click.UsageError) else error.exit_code)
    except HerdError as error:
        from rich.text import Text

        _error_console().print(Text.assemble(("herd:", "red"), f" {error}"))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def _error_console() -> Console:
    from llamaherd.cli.render import err_console  # rich loads when there is something to say

    return err_console

"""What several commands share: the config they run against, JSON output, the terminal."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from llamaherd.errors import UsageError

if TYPE_CHECKING:
    from llamaherd.client import DaemonClient
    from llamaherd.config import Config


def config_of(ctx: click.Context) -> Config:
    from llamaherd import control

    return control.find_config(ctx.obj["config"])


def optional_config(ctx: click.Context) -> Config | None:
    """Commands that talk to a running daemon need the config only to find its port."""
    try:
        return config_of(ctx)
    except UsageError:
        if ctx.obj["config"]:
            raise
        return None


def daemon_client(ctx: click.Context) -> DaemonClient:
    """For the commands that only talk to the daemon: it is found from herd.toml's
    [server] table, without loading the profiles (control.reach)."""
    from llamaherd import control

    return control.reach(ctx.obj["config"])


def emit_json(data: object) -> None:
    """Print as JSON; an API answer (a schema model) prints as the daemon sent it."""
    click.echo(json.dumps(data, indent=2, default=_plain))


def _plain(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else str(value)


def is_terminal() -> bool:
    return sys.stdin.isatty()


def is_fullscreen_terminal() -> bool:
    """The Textual picker and dashboard need a terminal on both ends; with output piped
    (or under a test runner) the plain numbered menu still works."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def wants_dashboard(no_dashboard: bool, as_json: bool) -> bool:
    return not no_dashboard and not as_json and is_fullscreen_terminal()

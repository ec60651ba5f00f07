"""Which herd.toml, and where its daemon listens, without the config's models.

`find_config_path` is the search order every command uses. `daemon_address` reads the
`[server]` table's management API address and key with tomllib alone: the commands that
only talk to the daemon (`herd status`, `herd switch` ...) need nothing else, and
pydantic with the config's model classes would cost them most of their start. It checks
the values it uses; when one is not plainly valid it answers None, and the caller loads
the whole file (load.py), which says what is wrong as every other command does.

This module imports no pydantic: keep it that way (tests/test_cli_imports.py checks).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import NamedTuple

from llamaherd import paths
from llamaherd.errors import ConfigError
from llamaherd.netaddr import local_url

CONFIG_NAME = "herd.toml"

# [server]'s defaults that a client needs to find the daemon (schema.ServerSettings uses
# the same constants).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8081

# Environment variables that move the ports without editing the file, so a second daemon
# (the demo beside your own, a test) can run; the daemon started by `herd up` inherits them.
PORT_VARIABLES = {"HERD_PORT": "port", "HERD_API_PORT": "api_port"}


class DaemonAddress(NamedTuple):
    """The management API's URL and the key it wants (None: no key)."""

    api_url: str
    api_key: str | None


def find_config_path(explicit: str | Path | None = None) -> Path:
    """The herd.toml to use: --config, then $HERD_CONFIG, ./herd.toml, the user config dir.

    An explicit path (or $HERD_CONFIG) that does not exist is an error rather than a
    fall-through: silently using another file would be far more confusing.
    """
    if explicit is not None:
        return _must_exist(Path(explicit), hint="check the --config path")
    env = os.environ.get("HERD_CONFIG")
    if env:
        return _must_exist(Path(env), hint="$HERD_CONFIG points here; fix it or unset it")
    here = Path.cwd() / CONFIG_NAME
    if here.is_file():
        return here
    user = paths.config_dir() / CONFIG_NAME
    if user.is_file():
        return user
    raise ConfigError(
        "no herd.toml found",
        hint=(
            f"looked at --config, $HERD_CONFIG, {here} and {user}; "
            f"run `herd demo` to write one, or create {user} with a [models.<id>] table"
        ),
    )


def _must_exist(path: Path, *, hint: str) -> Path:
    path = path.expanduser().absolute()
    if not path.is_file():
        raise ConfigError("config file not found", path=path, hint=hint)
    return path


def daemon_address(path: Path) -> DaemonAddress | None:
    """[server]'s API address and key (with $HERD_API_PORT), read without validating the
    rest of the file; None when the file or one of those values is not plainly valid."""
    try:
        server = tomllib.loads(path.read_text(encoding="utf-8")).get("server", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(server, dict):
        return None
    host = server.get("host", DEFAULT_HOST)
    api_port = server.get("api_port", DEFAULT_API_PORT)
    if variable := os.environ.get("HERD_API_PORT"):
        api_port = int(variable) if variable.isdigit() else None
    key = server.get("api_key")
    plain = (
        isinstance(host, str)
        and host != ""
        and isinstance(api_port, int)
        and not isinstance(api_port, bool)
        and 1 <= api_port <= 65535
        and (key is None or (isinstance(key, str) and key != ""))
    )
    return DaemonAddress(local_url(host, api_port), key) if plain else None

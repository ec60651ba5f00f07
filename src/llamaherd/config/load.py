"""Read and check herd.toml: `extends`, the port variables.

Reading order: `load_config` / `parse_config`, then how profiles are merged along
`extends` chains. The search order is in locate.py, the checks in checks.py, the
messages in explain.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llamaherd import paths
from llamaherd.config import checks, explain
from llamaherd.config.locate import CONFIG_NAME, PORT_VARIABLES, find_config_path
from llamaherd.config.schema import (
    ID_PATTERN,
    BenchSettings,
    ClaudeRoute,
    ClaudeSettings,
    Config,
    DockerSettings,
    HerdFile,
    Placement,
    Profile,
    Sampling,
    ServerSettings,
)
from llamaherd.errors import ConfigError


def editable_config(explicit: str | Path | None) -> tuple[Path, str]:
    """The herd.toml a command that writes profiles edits (`herd add`, `herd import`) and
    its text; a new one in the user config dir when none exists yet (an explicit path
    that does not exist is created too)."""
    if explicit is not None and not Path(explicit).expanduser().exists():
        return Path(explicit).expanduser().absolute(), _NEW_CONFIG
    try:
        path = find_config_path(explicit)
    except ConfigError:
        return paths.config_dir() / CONFIG_NAME, _NEW_CONFIG
    return path, path.read_text(encoding="utf-8")


_NEW_CONFIG = (
    "# herd.toml: model profiles for llamaherd (`herd add` and `herd import` write here).\n"
    'models_dir = "models"   # relative files are found here (next to this file)\n'
)


def load_config(path: str | Path | None = None, *, check_files: bool = True) -> Config:
    """Find (see find_config_path), read and check herd.toml."""
    found = find_config_path(path)
    try:
        text = found.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", path=found) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=found) from None
    config = parse_config(text, found, check_files=check_files)
    config.server = _ports_from_env(config.server, found)
    return config


def _ports_from_env(server: ServerSettings, path: Path) -> ServerSettings:
    update = {}
    for variable, key in PORT_VARIABLES.items():
        value = os.environ.get(variable)
        if not value:
            continue
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise ConfigError(
                f"${variable}={value!r} is not a port number",
                path=path,
                key=f"server.{key}",
                hint=f"set {variable} to 1-65535 or unset it",
            )
        update[key] = int(value)
    if not update:
        return server
    server = server.model_copy(update=update)
    checks.check_server(server, path)
    return server


def parse_config(text: str, path: Path | None = None, *, check_files: bool = True) -> Config:
    """Check herd.toml's text. `path` names the file in messages and anchors relative paths
    (the current directory when None). `check_files=False` skips looking for the GGUF
    files, for commands that only read the profiles."""
    data = explain.parse_toml(text, path)
    checks.check_characters(data, path)
    top = explain.validate(
        HerdFile,
        data,
        path=path,
        table="",
        sections={
            "": HerdFile,
            "server": ServerSettings,
            "docker": DockerSettings,
            "claude": ClaudeSettings,
            "claude.route": ClaudeRoute,
        },
    )
    base = path.parent if path is not None else Path.cwd()
    models_dir = _resolve_path(top.models_dir, base) if top.models_dir else base / "models"
    checks.check_server(top.server, path)
    defaults = _check_defaults(top.defaults, path)
    models = _load_profiles(top.models, defaults, models_dir, path, check_files=check_files)
    # A profile without its own runtime takes the file's, so consumers read one field.
    models = {
        pid: p if p.runtime else p.model_copy(update={"runtime": top.runtime})
        for pid, p in models.items()
    }
    config = Config(
        path=path,
        models_dir=models_dir,
        # Only resolved here: binaries.find_llama_server checks it (and `herd doctor` can
        # then still report a config whose binary is missing).
        llama_server=_resolve_path(top.llama_server, base) if top.llama_server else None,
        humaneval_data=_resolve_path(top.humaneval_data, base) if top.humaneval_data else None,
        server=top.server,
        models=models,
        docker=top.docker,
    )
    if top.default_model is not None:
        config.default_model = checks.default_model(config, top.default_model)
    config.claude = checks.claude_profiles(config, top.claude)
    return config


_TABLE_KEYS = ("sampling", "placement", "env", "bench")
"""Profile tables that `extends` merges key by key; every other key is replaced whole."""
_NOT_INHERITED = ("aliases",)
"""A child with its parent's aliases would claim the same names twice."""
_NOT_DEFAULTS = {
    "aliases": "an alias names one profile; set it in that profile",
    "extends": "set `extends` in the profiles that need it",
}
"""Profile keys that mean nothing when every profile has them."""


def _check_defaults(defaults: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """[defaults] checked as a profile would be, so a mistake there is reported there."""
    for key, hint in _NOT_DEFAULTS.items():
        if key in defaults:
            raise ConfigError(
                f"'{key}' cannot be a default", path=path, key=f"defaults.{key}", hint=hint
            )
    data = {"file": "", **defaults, "id": "defaults"}
    sections: dict[str, type[BaseModel]] = {
        "": Profile,
        "sampling": Sampling,
        "placement": Placement,
        "bench": BenchSettings,
    }
    try:
        explain.validate(Profile, data, path=path, table="defaults", sections=sections)
    except ConfigError as error:  # named at the top level: say which table
        key = f"defaults.{error.key}" if error.key else "defaults"
        raise ConfigError(error.message, path=path, key=key, hint=error.hint) from None
    return defaults


def _load_profiles(
    raw: dict[str, Any],
    defaults: dict[str, Any],
    models_dir: Path,
    path: Path | None,
    *,
    check_files: bool,
) -> dict[str, Profile]:
    """Validate every [models.<id>] table, parents before children (so a mistake in an
    inherited key is reported at the parent), otherwise in file order."""
    for pid, table in raw.items():
        if not re.fullmatch(ID_PATTERN, pid):
            suggestion = re.sub(r"[^A-Za-z0-9._-]+", "-", pid).strip("-") or "my-model"
            raise ConfigError(
                f"invalid profile id '{pid}'",
                path=path,
                key=f"models.{pid}",
                hint=f"use letters, digits, '.', '_' and '-' only, e.g. [models.{suggestion}]",
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"wrong type: expected a table, got {explain.got(table)}",
                path=path,
                key=f"models.{pid}",
                hint=f'write it as a table: [models.{pid}] then file = "model.gguf"',
            )
        if "id" in table:
            raise ConfigError(
                "unknown key 'id'",
                path=path,
                profile=pid,
                key="id",
                hint=f"the id is the table name [models.{pid}]; remove the key",
            )

    merged: dict[str, dict[str, Any]] = {}
    models: dict[str, Profile] = {}
    for pid in _extends_order(raw, path):
        parent = raw[pid].get("extends")
        own = raw[pid]
        # Precedence: [defaults], then the `extends` parent (which holds them already),
        # then the profile's own keys.
        merged[pid] = _merge(merged[parent] if parent is not None else defaults, own)
        if isinstance(own.get("args"), list) and isinstance(defaults.get("args"), list):
            # The defaults' args stay in front of a profile's own (not replaced like other
            # lists): llama-server takes the last of a repeated flag, so the profile wins.
            merged[pid]["args"] = [*defaults["args"], *own["args"]]
        data = {**merged[pid], "id": pid}
        if isinstance(data.get("file"), str):
            data["file"] = _resolve_path(data["file"], models_dir)
        elif "file" not in data:
            raise ConfigError(
                "missing required key 'file' (the GGUF to serve)",
                path=path,
                profile=pid,
                key="file",
                hint=f'e.g. file = "glm/GLM-4.7-Flash-Q4_K_M.gguf" (relative to {models_dir})',
            )
        profile = explain.validate(
            Profile,
            data,
            path=path,
            table=f"models.{pid}",
            sections={
                "": Profile,
                "sampling": Sampling,
                "placement": Placement,
                "bench": BenchSettings,
            },
            profile=pid,
        )
        checks.check_profile(profile, path)
        if check_files:
            checks.check_model_file(profile, models_dir, path)
        models[pid] = profile
    models = {pid: models[pid] for pid in raw}  # file order: `herd models` lists them so
    checks.check_aliases(models, path)
    return models


def _extends_order(raw: dict[str, dict[str, Any]], path: Path | None) -> list[str]:
    """Profile ids with every parent before its children; unknown parents and cycles are
    errors. File order is kept wherever extends allows it."""
    order: list[str] = []
    done: set[str] = set()

    def visit(pid: str, chain: list[str]) -> None:
        if pid in done:
            return
        if pid in chain:
            cycle = [*chain[chain.index(pid) :], pid]
            raise ConfigError(
                f"extends cycle: {' -> '.join(cycle)}",
                path=path,
                profile=cycle[0],
                key="extends",
                hint="remove `extends` from one of them",
            )
        parent = raw[pid].get("extends")
        if parent is not None:
            if not isinstance(parent, str):
                raise ConfigError(
                    f"wrong type: expected a profile id, got {explain.got(parent)}",
                    path=path,
                    profile=pid,
                    key="extends",
                    hint='e.g. extends = "glm-flash-q4"',
                )
            if parent not in raw:
                raise ConfigError(
                    f"extends unknown profile '{parent}'",
                    path=path,
                    profile=pid,
                    key="extends",
                    hint=explain.did_you_mean(parent, list(raw), what="profiles"),
                )
            visit(parent, [*chain, pid])
        done.add(pid)
        order.append(pid)

    for pid in raw:
        visit(pid, [])
    return order


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child profile over its (already merged) parent: tables key by key, lists whole."""
    out = {k: v for k, v in parent.items() if k not in _NOT_INHERITED}
    for key, value in child.items():
        if key in _TABLE_KEYS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _resolve_path(value: str, base: Path) -> Path:
    """`~` expanded, relative paths anchored at `base`, made absolute without following
    symlinks (messages then show the path the user wrote)."""
    return Path(os.path.normpath(base.absolute() / Path(value).expanduser()))

"""The checks of herd.toml that pydantic cannot express: reserved `args`, line breaks
and NULs, aliases that name one profile each, loopback without an API key, a `file`
that is a directory (a missing GGUF is a profile state, `missing`, not an error), and
[claude]/default_model naming real profiles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llamaherd.config.explain import did_you_mean
from llamaherd.config.schema import ClaudeSettings, Config, Placement, Profile, ServerSettings
from llamaherd.config.toml import toml_value
from llamaherd.errors import ConfigError, UsageError
from llamaherd.netaddr import is_loopback, parse_endpoint

# Flags herd sets itself in argv.py; a second copy in `args` would fight with it.
RESERVED_FLAGS: dict[str, str] = {
    "-m": "set the model with `file`",
    "--model": "set the model with `file`",
    "-mu": "herd serves local files: download the GGUF and set `file`",
    "--model-url": "herd serves local files: download the GGUF and set `file`",
    "-hf": "herd serves local files: download the GGUF and set `file`",
    "-hfr": "herd serves local files: download the GGUF and set `file`",
    "--hf-repo": "herd serves local files: download the GGUF and set `file`",
    "--host": "herd chooses llama-server's address; set the public one with [server] host",
    "--port": "herd chooses llama-server's port; set the public one with [server] port",
    "-a": "herd passes --alias <id>; add other names with `aliases`",
    "--alias": "herd passes --alias <id>; add other names with `aliases`",
    "--api-key": "herd's gateway checks the key; set [server] api_key",
    "--api-key-file": "herd's gateway checks the key; set [server] api_key",
    "--rpc": "list the workers in the profile's rpc = [...]",
    "--no-slots": "herd's dashboard reads /slots; it cannot be turned off",
}

# Free text, shown or sent in a request body, never put in an argv: it may span lines.
_MULTILINE_KEYS = ("name", "best_for", "bench.system_prompt")


def check_characters(value: Any, path: Path | None, keys: tuple[str, ...] = ()) -> None:
    """NUL and line breaks, in keys and values: almost every string here ends up in
    llama-server's (or docker's, or claude's) argv or environment, which cannot hold a
    NUL, and where a line break would only cause trouble; the start would die of it."""
    items = value.items() if isinstance(value, dict) else []
    for key, item in items:
        shown = key if key.isprintable() else repr(key)
        _check_text(key, path, (*keys, shown), is_key=True)
        check_characters(item, path, (*keys, shown))
    for item in value if isinstance(value, list) else []:
        check_characters(item, path, keys)
    if isinstance(value, str):
        _check_text(value, path, keys)


def _check_text(text: str, path: Path | None, keys: tuple[str, ...], is_key: bool = False) -> None:
    in_profile = keys[0] == "models" and len(keys) > 1
    profile, key = (keys[1], ".".join(keys[2:])) if in_profile else (None, ".".join(keys))
    if "\0" in text:
        bad, hint = "a NUL character", "remove the \\u0000; no program can be passed one"
    elif ("\n" in text or "\r" in text) and (is_key or key not in _MULTILINE_KEYS):
        bad = "a line break"
        hint = (
            "it reaches a command line or the environment: write it on one line; "
            "only name, best_for and bench.system_prompt may span lines"
        )
    else:
        return
    raise ConfigError(
        f"{bad} in {'the key' if is_key else 'the value'} {text!r}",
        path=path,
        profile=profile,
        key=key or None,
        hint=hint,
    )


def check_profile(profile: Profile, path: Path | None) -> None:
    """What pydantic cannot check in one profile: `args`, override_tensor, rpc."""
    _check_args(profile, path)
    _check_override_tensor(profile, path)
    _check_rpc(profile, path)


def _check_args(profile: Profile, path: Path | None) -> None:
    """`args` go last so they can override herd's choices, except the ones herd relies on."""
    for arg in profile.args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("--"):
            flag = flag.replace("_", "-")  # llama.cpp treats --n_gpu_layers as --n-gpu-layers
        if flag in RESERVED_FLAGS:
            raise ConfigError(
                f"'{arg}' is set by herd itself",
                path=path,
                profile=profile.id,
                key="args",
                hint=RESERVED_FLAGS[flag],
            )
        if arg.startswith("-") and any(c.isspace() for c in arg):
            words = ", ".join(f'"{w}"' for w in arg.split())
            raise ConfigError(
                f"'{arg}' is one item but looks like several words",
                path=path,
                profile=profile.id,
                key="args",
                hint=f"give each word its own item: args = [{words}]",
            )


def _check_override_tensor(profile: Profile, path: Path | None) -> None:
    """argv.py passes these as one comma-joined --override-tensor (llama.cpp warns about a
    repeated flag); llama.cpp splits at ',' then '='. Catch what would break there."""
    for entry in profile.placement.override_tensor or []:
        if "=" not in entry or "," in entry or entry.startswith("=") or entry.endswith("="):
            example = Placement.model_fields["override_tensor"].examples[0]  # type: ignore[index]
            raise ConfigError(
                f"invalid value {toml_value(entry)}: "
                "expected 'pattern=buffer', one override per item",
                path=path,
                profile=profile.id,
                key="placement.override_tensor",
                hint=f"e.g. [models.{profile.id}.placement] "
                f"override_tensor = {toml_value(example)}",
            )


def _check_rpc(profile: Profile, path: Path | None) -> None:
    example = Profile.model_fields["rpc"].examples[0]  # type: ignore[index]
    for endpoint in profile.rpc:
        try:
            parse_endpoint(endpoint)
        except ValueError as error:
            raise ConfigError(
                f"invalid RPC worker: {error}",
                path=path,
                profile=profile.id,
                key="rpc",
                hint=f"e.g. rpc = {toml_value(example)} (what `herd worker` prints)",
            ) from None


def check_aliases(models: dict[str, Profile], path: Path | None) -> None:
    """Every id and alias must name exactly one profile, or `herd switch NAME` is ambiguous."""
    owner: dict[str, str] = {pid: pid for pid in models}
    for pid, profile in models.items():
        for alias in profile.aliases:
            if not alias or any(c.isspace() for c in alias):
                raise ConfigError(
                    f"invalid alias {alias!r}",
                    path=path,
                    profile=pid,
                    key="aliases",
                    hint="aliases are names for `herd switch` and API requests: no spaces",
                )
            if alias in owner:
                other = owner[alias]
                if other == pid and alias == pid:
                    clash = "is this profile's own id"
                elif other == pid:
                    clash = "is listed twice"
                elif alias == other:
                    clash = f"is the id of profile '{other}'"
                else:
                    clash = f"is also an alias of profile '{other}'"
                raise ConfigError(
                    f"duplicate alias '{alias}': it {clash}",
                    path=path,
                    profile=pid,
                    key="aliases",
                    hint="each id and alias must name exactly one profile; remove or rename it",
                )
            owner[alias] = pid


def check_server(server: ServerSettings, path: Path | None) -> None:
    """DESIGN: both ports stay on loopback unless an API key guards them."""
    if server.port == server.api_port:
        raise ConfigError(
            f"port and api_port are both {server.port}",
            path=path,
            key="server.api_port",
            hint="the public endpoint and the management API need their own ports, "
            "e.g. port = 8080, api_port = 8081",
        )
    if not is_loopback(server.host) and server.api_key is None:
        raise ConfigError(
            f"host '{server.host}' is reachable from other machines but no api_key is set",
            path=path,
            key="server.host",
            hint='set api_key = "<secret>" in [server], or keep host = "127.0.0.1"',
        )
    for origin in server.allowed_origins:
        if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
            raise ConfigError(
                f"allowed_origins entry '{origin}' is not a web origin",
                path=path,
                key="server.allowed_origins",
                hint='write scheme://host[:port] with no path, e.g. "http://localhost:3000"',
            )


# An origin as browsers send it: scheme://host[:port], no path (RFC 6454).
ORIGIN_PATTERN = re.compile(r"https?://(\[[0-9a-fA-F:.]+\]|[^/:\s\[\]]+)(:\d{1,5})?")


def check_model_file(profile: Profile, models_dir: Path, path: Path | None) -> None:
    """A `file` that is a directory is a mistake in herd.toml. A file that is not there
    (yet) is not: the profile shows as `missing`, and only starting it fails
    (missing_model_file), so one model still downloading breaks no other."""
    if profile.file.is_dir():
        raise _model_file_error(profile, models_dir, path, "is a directory, not a GGUF file")


def missing_model_file(config: Config, profile: Profile) -> ConfigError | None:
    """Why `profile` cannot start now because its GGUF is not on disk; None when it is.
    Asked at each start and each listing, so a file that appears is noticed at once."""
    if profile.file.exists():
        return None
    return _model_file_error(profile, config.models_dir, config.path, "not found")


def _model_file_error(
    profile: Profile, models_dir: Path, path: Path | None, what: str
) -> ConfigError:
    return ConfigError(
        f"model file {what}: {profile.file}",
        path=path,
        profile=profile.id,
        key="file",
        hint=f"models_dir is {models_dir}; download the GGUF there, fix `file`, "
        "or set models_dir at the top of the file",
    )


def default_model(config: Config, name: str) -> str:
    try:
        return config.resolve(name).id
    except UsageError:
        raise ConfigError(
            f"default_model '{name}' is not a profile",
            path=config.path,
            key="default_model",
            hint=did_you_mean(name, list(config.models), what="profiles"),
        ) from None


def claude_profiles(config: Config, claude: ClaudeSettings) -> ClaudeSettings:
    """[claude] names profiles by id or alias; keep ids, so the gateway compares plainly."""
    ids: dict[str, str] = {}
    for key, name in claude.profile_keys().items():
        try:
            ids[key] = config.resolve(name).id
        except UsageError:
            raise ConfigError(
                f"'{name}' is not a profile",
                path=config.path,
                key=key,
                hint=did_you_mean(name, list(config.models), what="profiles"),
            ) from None
    route = claude.route.model_copy(
        update={k.split(".")[-1]: v for k, v in ids.items() if k.startswith("claude.route.")}
    )
    top = {k.split(".")[-1]: v for k, v in ids.items() if not k.startswith("claude.route.")}
    return claude.model_copy(update={**top, "route": route})

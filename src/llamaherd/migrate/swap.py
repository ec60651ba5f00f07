"""llama-swap's config.yaml: `models` (cmd with macros expanded, aliases, ttl, env ...),
`groups` as far as herd can express them; the rest is noted."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from llamaherd.errors import UsageError
from llamaherd.migrate import Imported, profile_id
from llamaherd.migrate.flags import read_flags

_MACRO = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
_HERD_DOES = {
    "proxy": "herd proxies to the llama-server it starts",
    "checkEndpoint": "herd waits for llama-server's /health",
    "cmdStop": "herd stops llama-server itself",
    "useModelName": "herd passes requests to the profile named in `model`",
}


def read(source: Path, text: str) -> Imported:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"{source}: not YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise UsageError(f"{source}: no `models:` mapping; is this llama-swap's config.yaml?")
    imported = Imported(source)
    macros = {str(k): str(v) for k, v in (data.get("macros") or {}).items()}
    for key in data:
        if key not in ("models", "macros", "groups"):
            imported.note(source.name, f"{key}: not imported (no herd equivalent read here)")
    for name, model in data["models"].items():
        where = f"{source.name} models.{name}"
        pid = profile_id(str(name), imported, where)
        table = _model(model or {}, {**macros, **(model or {}).get("macros", {})}, where, imported)
        if table is not None:
            imported.profiles[pid] = table
    for name, group in (data.get("groups") or {}).items():
        _group(str(name), group or {}, imported)
    return imported


def _model(
    model: dict[str, Any], macros: dict[str, str], where: str, imported: Imported
) -> dict[str, Any] | None:
    cmd = _expand(str(model.get("cmd", "")), macros, where, imported)
    words = shlex.split(cmd.replace("\\\n", " "), comments=True)
    if not words or not Path(words[0]).name.startswith("llama-server"):
        imported.note(where, f"cmd does not run llama-server ({cmd.strip()[:60]!r}): not imported")
        return None
    read = read_flags(words[1:])
    # `--alias ${MODEL_ID}`: herd passes the profile id as the alias itself
    aliases = [a for a in read.keys.pop("aliases", []) if "${" not in a]
    if aliases:
        read.keys["aliases"] = aliases
    if "file" not in read.keys:
        imported.note(where, "cmd has no -m/--model (a local GGUF): not imported")
        return None
    base: dict[str, Any] = {}
    for key, value in model.items():
        if key in ("cmd", "macros"):
            continue
        if key == "name":
            base["name"] = str(value)
        elif key == "description":
            base["best_for"] = str(value)
        elif key == "aliases":
            read.keys["aliases"] = [*read.keys.get("aliases", []), *map(str, value)]
        elif key == "ttl" and isinstance(value, int) and value > 0:
            base["ttl"] = value
        elif key == "ttl":
            pass  # 0: never unloaded, herd's default too
        elif key == "env":
            pairs = (str(item).partition("=") for item in value)
            base["env"] = {k: v for k, _, v in pairs}
        elif key in _HERD_DOES:
            imported.note(where, f"{key}: not imported ({_HERD_DOES[key]})")
        else:
            imported.note(where, f"{key}: {value!r} not imported (no herd equivalent)")
    return imported.table(where, read, base)


def _expand(text: str, macros: dict[str, str], where: str, imported: Imported) -> str:
    """${macro} replaced (macros may use macros); ${PORT} and ${MODEL_ID} are llama-swap's
    own and only ever follow flags herd drops (--port, --alias)."""
    for _ in range(10):  # a macro that names itself must not loop forever
        new = _MACRO.sub(lambda m: macros.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    for name in set(_MACRO.findall(text)) - {"PORT", "MODEL_ID"}:
        imported.note(where, f"${{{name}}}: unknown macro, left as is")
    return text


def _group(name: str, group: dict[str, Any], imported: Imported) -> None:
    """herd runs one model at a time by default ([server] max_loaded = 1), like a
    swapping group; `persistent` becomes the members' `persistent`."""
    where = f"{imported.source.name} groups.{name}"
    members = [str(m) for m in group.get("members") or []]
    if group.get("persistent"):
        for member in members:
            if member in imported.profiles:
                imported.profiles[member]["persistent"] = True
    if group.get("swap") is False or group.get("exclusive") is False:
        imported.note(
            where,
            f"swap/exclusive false ({', '.join(members)} run together): herd has no groups; "
            f"set [server] max_loaded = {max(2, len(members))} to keep several models loaded",
        )

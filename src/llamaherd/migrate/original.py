"""The original setup: models.conf (one [section] per model, KEY=value lines) and the
docker-compose.yml whose environment held the defaults every model started from.

The original's entrypoint turned each variable into a llama-server flag (VARIABLES below);
the flags are then read like any command line (flags.py), so CTX_SIZE and `-c` in
EXTRA_ARGS land in the same key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaherd.errors import UsageError
from llamaherd.migrate import Imported, profile_id
from llamaherd.migrate.flags import KEY_OF, read_flags

VARIABLES = {
    "CTX_SIZE": "-c",
    "N_GPU_LAYERS": "-ngl",
    "FIT": "--fit",
    "FIT_TARGET": "--fit-target",
    "FIT_CTX": "--fit-ctx",
    "SPLIT_MODE": "--split-mode",
    "TENSOR_SPLIT": "--tensor-split",
    "MAIN_GPU": "--main-gpu",
    "FLASH_ATTN": "-fa",
    "KV_CACHE_TYPE_K": "-ctk",
    "KV_CACHE_TYPE_V": "-ctv",
}
"""The original's variables that stood for one llama-server flag each (its compose file)."""
TEXT_KEYS = {"NAME": "name", "DESCRIPTION": "best_for", "SPEED": "speed_hint"}


@dataclass
class Section:
    name: str | None  # None: lines before the first [section]
    line: int
    entries: list[tuple[str, str, int]] = field(default_factory=list)


def ini_sections(text: str, imported: Imported) -> list[Section]:
    """[section] and key=value lines, with line numbers; `#` and `;` start comments. A
    line that is neither is noted."""
    sections = [Section(None, 0)]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        head = re.fullmatch(r"\[(.+)\]", line)
        if head:
            sections.append(Section(head.group(1).strip(), number))
        elif "=" in line:
            key, _, value = line.partition("=")
            sections[-1].entries.append((key.strip(), value.strip(), number))
        else:
            imported.note(f"{imported.source.name}:{number}", f"{line!r}: not a key = value line")
    return sections


def looks_like(text: str) -> bool:
    """A models.conf names its model with an upper-case MODEL= line."""
    return re.search(r"(?m)^\s*MODEL\s*=", text) is not None


def read(source: Path, text: str) -> Imported:
    # The original mounted ./models (next to models.conf) at /models; MODEL is relative.
    imported = Imported(source, models_dir=(source.parent / "models").absolute())
    for section in ini_sections(text, imported):
        where = f"{source.name}:{section.line}"
        if section.name is None:
            for key, value, number in section.entries:
                imported.note(f"{source.name}:{number}", f"{key}={value}: outside any [section]")
            continue
        pid = profile_id(section.name, imported, where)
        base: dict[str, Any] = {}
        words: list[str] = []
        for key, value, number in section.entries:
            if key in TEXT_KEYS:
                base[TEXT_KEYS[key]] = value
            elif key == "MODEL":
                base["file"] = value
            elif key == "EXTRA_ARGS":
                words += value.split()  # as the original's shell split it: no quoting
            elif key in VARIABLES:
                words += [VARIABLES[key], value] if value else []
            else:
                imported.note(
                    f"{source.name}:{number}", f"{key}={value}: unknown key, not imported"
                )
        if "file" not in base:
            imported.note(where, f"[{section.name}] has no MODEL: not imported")
            continue
        imported.profiles[pid] = imported.table(
            f"{where} [{section.name}]", read_flags(words), base
        )
    return imported


_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def read_compose(path: Path, imported: Imported) -> None:
    """The llama-server service's environment (and command) into imported.defaults.
    `${VAR:-default}` stands for its default: what every model got unless models.conf
    said otherwise."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict) or not services:
        raise UsageError(f"{path}: no services: is this a docker-compose file?")
    name, service = _llama_service(services, path)
    where = f"{path.name} services.{name}"
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in map(str, environment))
    words: list[str] = []
    env: dict[str, str] = {}
    for variable, raw in environment.items():
        value = _DEFAULT.sub(lambda m: m.group(2) or "", str(raw if raw is not None else ""))
        if variable == "MODEL":
            continue  # each profile's own file (models.conf MODEL)
        if not value:
            imported.note(where, f"{variable}: empty, nothing to import")
        elif variable == "EXTRA_ARGS":
            words += value.split()
        elif variable in VARIABLES:
            words += [VARIABLES[variable], value]
        elif _flag_of(variable) in KEY_OF:
            words += [_flag_of(variable), value]
        else:  # llama-server reads its own LLAMA_ARG_* too: they keep working from env
            env[variable] = value
    command = service.get("command")
    words += command.split() if isinstance(command, str) else [str(w) for w in command or []]
    defaults = imported.table(where, read_flags(words))
    if env:
        defaults["env"] = env
        imported.note(where, f"{', '.join(env)}: kept as llama-server's environment (env)")
    imported.defaults = {**defaults, **imported.defaults}
    ignored = [k for k in service if k not in ("environment", "command")]
    if ignored:
        imported.note(
            where, f"{', '.join(ignored)}: not imported (herd starts llama-server itself)"
        )


def _llama_service(services: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """The service that runs llama-server: by name or image, else the only one."""
    for name, service in services.items():
        if "llama" in f"{name} {service.get('image', '')}".lower():
            return name, service
    if len(services) == 1:
        return next(iter(services.items()))
    raise UsageError(f"{path}: which service runs llama-server? found {', '.join(services)}")


def _flag_of(variable: str) -> str:
    """LLAMA_ARG_CTX_SIZE -> --ctx-size (llama.cpp's environment names for its flags)."""
    if not variable.startswith("LLAMA_ARG_"):
        return ""
    return "--" + variable.removeprefix("LLAMA_ARG_").lower().replace("_", "-")

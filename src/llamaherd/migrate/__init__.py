"""`herd import`: profiles from another setup's files, written into herd.toml.

- original.py: the original setup's models.conf (and its docker-compose.yml's defaults);
- swap.py: llama-swap's config.yaml;
- preset.py: llama.cpp's router preset INI (`llama-server --models-preset`);
- flags.py: llama-server flags back to profile keys (argv.py's map, reversed).

Each reader returns an Imported: profile tables, `[defaults]`, and a note for every line
herd could not map, so nothing is dropped silently. `merge` writes them with tomlkit,
keeping the file's comments, and never replaces a profile without `force`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from llamaherd.config import ID_PATTERN, parse_config
from llamaherd.config.toml import replace_table, table_item
from llamaherd.errors import UsageError
from llamaherd.migrate.flags import Read


@dataclass
class Imported:
    """What one source file holds, in herd.toml's terms."""

    source: Path
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    models_dir: Path | None = None
    """Where the source's relative model paths point (they are rewritten to fit the
    herd.toml's models_dir); None: paths are written as found."""

    def note(self, where: str, text: str) -> None:
        self.notes.append(f"{where}: {text}")

    def table(self, where: str, read: Read, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """A profile table from `base` plus what flags were read (notes kept, under `where`)."""
        out = dict(base or {})
        for key, value in read.keys.items():
            table, _, name = key.rpartition(".")
            (out.setdefault(table, {}) if table else out)[name] = value
        if read.args:
            out["args"] = [*out.get("args", []), *read.args]
        for text in read.notes:
            self.note(where, text)
        return out


def profile_id(name: str, imported: Imported, where: str) -> str:
    """A herd profile id for `name`: as is when it fits ID_PATTERN, else made to fit."""
    if re.fullmatch(ID_PATTERN, name):
        return name
    pid = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
    imported.note(where, f"id {name!r} written as '{pid}' (ids are letters, digits, . _ -)")
    return pid


@dataclass
class Merged:
    text: str
    added: list[str]
    replaced: list[str]
    kept: list[str]
    """Profiles (and defaults keys) already in the file, left as they were (no --force)."""


def merge(imported: Imported, text: str, path: Path, *, force: bool) -> Merged:
    """herd.toml's text with the imported profiles and defaults added (tomlkit: comments
    and layout stay). The result is checked as herd.toml before it is returned."""
    import tomlkit

    doc = tomlkit.parse(text)
    added, replaced, kept = [], [], []
    models_dir = _models_dir(doc, path, imported)
    comment = f"imported from {imported.source.name} by `herd import` on {date.today()}"
    if imported.defaults:
        defaults = doc.get("defaults")
        if defaults is None:
            doc["defaults"] = table_item(imported.defaults, comment)
        else:
            for key, value in imported.defaults.items():
                if key in defaults and not force:
                    kept.append(f"defaults.{key}")
                else:
                    defaults[key] = value
    models = doc.get("models")
    if models is None:
        models = tomlkit.table(is_super_table=True)
        doc["models"] = models
    for pid, table in imported.profiles.items():
        table = _with_file(table, models_dir, imported.models_dir)
        if pid in models and not force:
            kept.append(pid)
        elif pid in models:
            replace_table(models, pid, table_item(table, comment))
            replaced.append(pid)
        else:
            models[pid] = table_item(table, comment)
            added.append(pid)
    new_text = tomlkit.dumps(doc)
    parse_config(new_text, path, check_files=False)  # never write a broken file
    return Merged(new_text, added, replaced, kept)


def _models_dir(doc: Any, path: Path, imported: Imported) -> Path:
    """The herd.toml's models_dir; a file without one gets the source's, so the imported
    relative paths stay short."""
    value = doc.get("models_dir")
    if value is None and imported.models_dir is not None:
        doc["models_dir"] = str(imported.models_dir)
        return imported.models_dir
    return (path.parent / Path(str(value or "models")).expanduser()).absolute()


def _with_file(table: dict[str, Any], models_dir: Path, source_dir: Path | None) -> dict[str, Any]:
    """A relative `file` from the source made to point at the same file from models_dir."""
    file = table.get("file")
    if not isinstance(file, str) or source_dir is None or Path(file).is_absolute():
        return table
    if models_dir.absolute() == source_dir.absolute():
        return table
    return {**table, "file": str(source_dir / file)}


def read(source: Path, *, compose: Path | None = None) -> Imported:
    """Read `source` by its format: models.conf, a llama-swap YAML, or a preset INI."""
    from llamaherd.migrate import original, preset, swap

    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {source}: {error}") from None
    if source.suffix in (".yaml", ".yml"):
        if compose is not None:
            raise UsageError("--compose goes with a models.conf, not a llama-swap config")
        return swap.read(source, text)
    if original.looks_like(text):
        imported = original.read(source, text)
        if compose is not None:
            original.read_compose(compose, imported)
        return imported
    if compose is not None:
        raise UsageError("--compose goes with a models.conf, not a preset INI")
    return preset.read(source, text)

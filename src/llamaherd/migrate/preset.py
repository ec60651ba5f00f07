"""llama.cpp's router preset INI (`llama-server --models-preset FILE`): `[*]` holds what
every model gets (herd's [defaults]), each other section one model. Keys are flags
without their dashes (`n-gpu-layers`, `c`) or llama.cpp's LLAMA_ARG_* names."""

from __future__ import annotations

from pathlib import Path

from llamaherd.migrate import Imported, profile_id
from llamaherd.migrate.flags import KEY_OF, read_flags
from llamaherd.migrate.original import ini_sections

ROUTER_ONLY = {
    "load-on-startup": "herd starts default_model with `herd up`",
    "stop-timeout": "herd's is [server] stop_timeout",
}
_TRUE, _FALSE = {"true", "on", "1", "enabled"}, {"false", "off", "0", "disabled"}


def read(source: Path, text: str) -> Imported:
    imported = Imported(source)
    for section in ini_sections(text, imported):
        if section.name is None:  # `version = 1` and the like: the file's, not a model's
            for key, value, number in section.entries:
                if key != "version":
                    imported.note(f"{source.name}:{number}", f"{key} = {value}: not imported")
            continue
        where = f"{source.name}:{section.line} [{section.name}]"
        words: list[str] = []
        for key, value, number in section.entries:
            if key in ROUTER_ONLY:
                imported.note(
                    f"{source.name}:{number}", f"{key}: not imported ({ROUTER_ONLY[key]})"
                )
            else:
                words += _words(key, value)
        table = imported.table(where, read_flags(words))
        if section.name == "*":
            imported.defaults = table
            continue
        if "file" not in table:
            imported.note(
                where,
                "no local `model` file (a Hugging Face repo?): not imported; "
                f"`herd add {section.name}` downloads it and adds a profile",
            )
            continue
        pid = profile_id(section.name, imported, where)
        if pid != section.name:  # clients keep asking for it by its old name
            table["aliases"] = [*table.get("aliases", []), section.name]
        imported.profiles[pid] = table
    return imported


def _words(key: str, value: str) -> list[str]:
    """`n-gpu-layers = 99` -> ["--n-gpu-layers", "99"]; `jinja = true` -> ["--jinja"]."""
    if key.startswith("LLAMA_ARG_"):
        flag = "--" + key.removeprefix("LLAMA_ARG_").lower().replace("_", "-")
    else:
        flag = "-" + key if "-" + key in KEY_OF else "--" + key
    if flag not in KEY_OF and value.lower() in _TRUE:
        return [flag]
    if flag not in KEY_OF and value.lower() in _FALSE:
        return ["--no-" + flag.lstrip("-")]
    return [flag, value]

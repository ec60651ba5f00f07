"""Values written the way they appear in herd.toml: in error hints (`e.g. top_p = 0.95`),
in `herd plan`'s `placement = { ... }` line and in `herd add`'s summary. The one writer:
herd.toml itself is edited with tomlkit (table_item, replace_table below, for `herd add`
and `herd import`), which keeps comments and layout."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tomlkit.items import Table

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def toml_value(value: Any) -> str:
    """`0.95`, `"q8_0"`, `[24, 16]`, `{ fit = false, n_gpu_layers = "all" }`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    return str(value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    """A TOML basic string: control characters escaped, so it stays on one line."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def table_item(table: dict[str, Any], comment: str | None = None) -> Table:
    """A tomlkit table for herd.toml (a comment line first; sub-tables inline), for the
    commands that edit the file keeping its comments and layout (`herd add`, `herd import`).
    tomlkit is imported here, not at the top: every `herd` command imports this module."""
    import tomlkit

    item = tomlkit.table()
    if comment:
        item.add(tomlkit.comment(comment))
    for key, value in table.items():
        if isinstance(value, dict):
            inline = tomlkit.inline_table()
            inline.update(value)
            item.add(key, inline)
        else:
            item.add(key, value)
    return item


def replace_table(parent: Table, key: str, item: Table) -> None:
    """Replace parent[key]'s content with item's where it stands (tomlkit keeps the
    position, so the file's order and the comments around the table stay)."""
    old = parent[key]
    for name in list(old.keys()):
        del old[name]
    for name, value in item.value.body:
        if name is None:
            old.add(value)  # a comment
        else:
            old[name.key] = value

"""llama-server flags (a command line, EXTRA_ARGS, a preset's keys) back to profile keys.

The flag -> key map is runtime/argv.py's FLAGS, read the other way round, so `herd import`
and the command line herd builds cannot disagree. A flag herd has a key for becomes that
key when its value fits the key's type; every other flag stays in `args` as written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from llamaherd.config import Placement, Profile, Sampling
from llamaherd.config.checks import RESERVED_FLAGS as RESERVED
from llamaherd.runtime.argv import FLAGS

KEY_OF = {spelling: key for key, spellings in FLAGS.items() for spelling in spellings}
KEY_OF |= {"-m": "file", "--model": "file", "-a": "aliases", "--alias": "aliases"}
_TABLES: dict[str, type[BaseModel]] = {"sampling": Sampling, "placement": Placement}
_TRUE, _FALSE = {"1", "true", "on", "yes", "enabled"}, {"0", "false", "off", "no", "disabled"}
DROPPED = {"--host", "--port"}
"""herd chooses llama-server's address itself: these are dropped (and reported)."""


@dataclass
class Read:
    """What a list of words became: profile keys (dotted: "placement.fit"), the words
    left for `args`, and one note for each word herd did not take."""

    keys: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_flags(words: list[str]) -> Read:
    out = Read()
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        has_value = bool(eq) or (i + 1 < len(words) and _is_value(words[i + 1]))
        value = inline if eq else (words[i + 1] if has_value else None)
        step = 1 if eq or not has_value else 2
        key = KEY_OF.get(flag)
        if flag in DROPPED or (flag in RESERVED and key is None):
            why = "herd chooses llama-server's address" if flag in DROPPED else RESERVED[flag]
            out.notes.append(f"{' '.join(words[i : i + step])}: not imported ({why})")
        elif key is not None and set_key(out.keys, key, value):
            pass
        elif key is not None and value is None and _is_switch(key):
            set_key(out.keys, key, "on")  # the old bare `-fa`: on
            step = 1
        else:
            if key is not None:
                out.notes.append(f"{flag} {value}: kept in args (not a valid `{key}`)")
            out.args.append(word)
            step = 1  # an unknown flag's words are copied one by one, in order
        i += step
    return out


def set_key(keys: dict[str, Any], key: str, word: str | None) -> bool:
    """keys[key] = word converted to the key's type; False when it does not fit. List
    keys take comma-separated items and grow when the flag is repeated (-ot, --rpc)."""
    if word is None:
        return False
    if key in ("file",):
        keys[key] = word
        return True
    if _is_list(key):
        items = [_convert(key, item, in_list=True) for item in word.split(",")]
        if any(item is None for item in items):
            return False
        keys[key] = [*keys.get(key, []), *items]
        return True
    value = _convert(key, word)
    if value is None:
        return False
    keys[key] = value
    return True


def _convert(key: str, word: str, *, in_list: bool = False) -> Any:
    """The first reading of `word` the key's field accepts: int, float, bool, on/off, text."""
    candidates: list[Any] = []
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            candidates.append(kind(word))
    low = word.lower()
    candidates += [True, "on"] if low in _TRUE else [False, "off"] if low in _FALSE else []
    candidates.append(word)
    for candidate in candidates:
        if _accepts(key, [candidate] if in_list else candidate):
            return candidate
    return None


def _accepts(key: str, value: Any) -> bool:
    table, _, name = key.rpartition(".")
    model = _TABLES.get(table, Profile)
    data = {name: value} if table else {"id": "x", "file": "x", name: value}
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _is_list(key: str) -> bool:
    table, _, name = key.rpartition(".")
    annotation = (_TABLES.get(table, Profile)).model_fields[name].annotation
    return "list[" in str(annotation)


def _is_switch(key: str) -> bool:
    return _accepts(key, "on") or _accepts(key, True)


def _is_value(word: str) -> bool:
    """A word that is a flag's value, not the next flag: anything but `-x`/`--x` (a
    negative number is a value)."""
    if not word.startswith("-"):
        return True
    try:
        float(word)
    except ValueError:
        return False
    return True

"""A pydantic error as one ConfigError line naming the file, the profile and the key,
with a hint derived from the field (its type, its range, its declared example). Users
never see a raw pydantic dump or a traceback."""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from llamaherd.config.toml import toml_value
from llamaherd.errors import ConfigError

_M = TypeVar("_M", bound=BaseModel)

_RANGE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "string_too_short",
    "string_pattern_mismatch",
}

# Names people bring from llama.cpp flags or the old models.conf.
_SYNONYMS = {
    "temp": "temperature",
    "model": "file",
    "path": "file",
    "gguf": "file",
    "ctx_size": "ctx",
    "n_ctx": "ctx",
    "context": "ctx",
    "context_size": "ctx",
    "c": "ctx",
    "np": "parallel",
    "n_parallel": "parallel",
    "t": "threads",
    "fa": "flash_attn",
    "ctk": "cache_type_k",
    "ctv": "cache_type_v",
    "ngl": "n_gpu_layers",
    "gpu_layers": "n_gpu_layers",
    "ts": "tensor_split",
    "ot": "override_tensor",
    "mg": "main_gpu",
    "device": "devices",
    "dev": "devices",
    "extra_args": "args",
    "alias": "aliases",
    "description": "best_for",
    "model_dir": "models_dir",
}


def parse_toml(text: str, path: Path | None) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        hint = 'check the syntax there; strings need quotes, e.g. file = "model.gguf"'
        where = re.search(r"line (\d+)", message)
        if where:
            lines = text.splitlines()
            number = int(where.group(1))
            if 0 < number <= len(lines) and lines[number - 1].strip():
                hint = f"line {number} reads {lines[number - 1].strip()!r}; {hint}"
        raise ConfigError(f"invalid TOML: {message}", path=path, hint=hint) from None


def validate(
    model: type[_M],
    data: dict[str, Any],
    *,
    path: Path | None,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    profile: str | None = None,
) -> _M:
    """model.model_validate, with the first error explained as a ConfigError.

    `table` is the TOML table the data came from ("" for the top level, "models.glm"),
    `sections` maps each sub-table path to its model, so that an unknown key can be
    pointed at the table where it belongs.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _explain(
            error, model, path=path, table=table, sections=sections, profile=profile
        ) from None


def _explain(
    error: Any,
    model: type[BaseModel],
    *,
    path: Path | None,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    profile: str | None,
) -> ConfigError:
    """One pydantic error as a ConfigError: unknown key, missing key, wrong type or
    invalid value, with the expected type and an example derived from the field."""
    # Walk the error location through the models: ("placement", "tensor_split", 1) ends at
    # the tensor_split field, item 1. Union member tags ("int", "literal[...]") end the walk.
    walked: list[str] = []
    cls: type[BaseModel] | None = model
    info: FieldInfo | None = None
    annotation: Any = None
    limits: list[Any] = []  # Field(...) constraints of the field itself, e.g. min_length
    unknown: str | None = None
    item = ""
    for part in error["loc"]:
        if isinstance(part, int):
            annotation, limits = _item_type(annotation), []
            item = f" (item {part + 1})"
        elif cls is not None and part in cls.model_fields:
            info = cls.model_fields[part]
            annotation, limits = info.annotation, list(info.metadata)
            walked.append(part)
            cls = _model_in(annotation)
        elif cls is not None and error["type"] == "extra_forbidden":
            unknown = part
            break
        elif _is_dict(annotation):
            annotation, limits = _item_type(annotation), []
            walked.append(part)
        else:
            break

    section = ".".join(walked)
    if unknown is not None:
        return _unknown_key(
            unknown, section, table=table, sections=sections, path=path, profile=profile
        )
    key = section or None

    leaf = walked[-1] if walked else ""
    parent_table = ".".join(filter(None, [table, *walked[:-1]]))
    value = error.get("input")
    if error["type"] == "missing":
        return ConfigError(
            f"missing required key '{leaf}'",
            path=path,
            profile=profile,
            key=key,
            hint=_example(info, leaf, parent_table),
        )
    expected = _describe(annotation, limits)
    bad_choice = error["type"] == "literal_error" and isinstance(value, str)
    if error["type"] in _RANGE_ERRORS or bad_choice:
        message = f"invalid value {toml_value(value)}{item}: expected {expected}"
    else:
        message = f"wrong type: expected {expected}, got {got(value)}{item}"
    hint: str | None
    if _model_in(annotation) or _is_dict(annotation):
        hint = f"write it as a table: [{'.'.join(filter(None, [table, *walked]))}]"
    elif _strip_none(annotation) is str and isinstance(value, int | float | bool):
        hint = f'quote it: {walked[-1]} = "{toml_value(value)}"'
    else:
        hint = _example(info, leaf, parent_table)
    return ConfigError(message, path=path, profile=profile, key=key, hint=hint)


def _unknown_key(
    key: str,
    section: str,
    *,
    table: str,
    sections: Mapping[str, type[BaseModel]],
    path: Path | None,
    profile: str | None,
) -> ConfigError:
    """An unknown key, with the closest known one, or the table where it belongs."""
    here = set(sections[section].model_fields) - {"id"} if section in sections else set()
    elsewhere = {
        name: sub
        for sub, cls in sections.items()
        if sub != section
        for name in cls.model_fields
        if name != "id"
    }
    guess = key.lower().replace("-", "_")
    if _SYNONYMS.get(guess) in here | set(elsewhere):
        guess = _SYNONYMS[guess]

    def table_of(sub: str) -> str:
        name = ".".join(filter(None, [table, sub]))
        return f"[{name}]" if name else "the top level"

    hint: str
    if guess in here:
        hint = f"did you mean '{guess}'?"
    elif guess in elsewhere and guess == key:
        home = elsewhere[guess]
        if home:
            hint = f"'{key}' is a {home} setting: put it under {table_of(home)}"
        elif table:
            hint = f"'{key}' is a profile setting: put it under {table_of(home)}"
        else:
            hint = f"'{key}' is a top-level setting: move it above the first [table]"
    elif guess in elsewhere:
        hint = f"did you mean '{guess}'? put it under {table_of(elsewhere[guess])}"
    elif close := difflib.get_close_matches(guess, sorted(here), n=1):
        hint = f"did you mean '{close[0]}'?"
    elif close := difflib.get_close_matches(guess, sorted(elsewhere), n=1):
        hint = f"did you mean '{close[0]}'? put it under {table_of(elsewhere[close[0]])}"
    else:
        hint = f"known keys in {table_of(section)}: {', '.join(sorted(here))}"
    full_key = ".".join(filter(None, [section, key]))
    return ConfigError(f"unknown key '{key}'", path=path, profile=profile, key=full_key, hint=hint)


def did_you_mean(name: str, known: Sequence[str], *, what: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    listing = f"known {what}: {', '.join(known)}" if known else f"no {what} are defined"
    return f"did you mean '{close[0]}'? {listing}" if close else listing


def _example(info: FieldInfo | None, leaf: str, parent_table: str) -> str | None:
    """'e.g. [models.glm.sampling] top_p = 0.95', from the field's declared example."""
    if info is None or not info.examples:
        return None
    prefix = f"[{parent_table}] " if parent_table else ""
    return f"e.g. {prefix}{leaf} = {toml_value(info.examples[0])}"


# Type descriptions for messages, derived from the annotations.

_NAMES: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "true/false values"),
    Path: ("a path string", "path strings"),
}


def _describe(annotation: Any, limits: Sequence[Any] = (), *, plural: bool = False) -> str:
    """`Annotated[float, Field(ge=0, le=1)] | None` -> 'a number between 0 and 1'.

    `limits` are constraints declared on the field itself (Field(min_length=1)).
    """
    annotation, inner = _unwrap(annotation)
    limits = [*limits, *inner]
    origin = get_origin(annotation)
    nonempty = any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in limits)
    if origin in (Union, UnionType):
        parts: list[str] = []
        for arg in get_args(annotation):
            if get_origin(arg) is Literal:  # 'an integer, 'auto' or 'all'', not nested "or"s
                parts.extend(repr(v) for v in get_args(arg))
            elif arg is not NoneType:
                parts.append(_describe(arg, limits, plural=plural))
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        values = [repr(v) for v in get_args(annotation)]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    if origin is list:
        noun = "lists" if plural else "a list"
        noun = "a non-empty list" if nonempty and not plural else noun
        return f"{noun} of {_describe(get_args(annotation)[0], plural=True)}"
    if origin is dict:
        noun = "tables" if plural else "a table"
        return f"{noun} of {_describe(get_args(annotation)[1], plural=True)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "tables" if plural else "a table"
    singular, many = _NAMES.get(annotation, (getattr(annotation, "__name__", "?"), "values"))
    text = many if plural else singular
    if nonempty and annotation is str:
        text = "non-empty strings" if plural else "a non-empty string"
    return f"{text} {_range(limits)}".rstrip()


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """Strip Annotated, collecting its constraint objects (annotated_types Ge, Le, ...)."""
    limits: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        for meta in extra:
            limits.extend(meta.metadata if isinstance(meta, FieldInfo) else [meta])
    return annotation, limits


def _range(limits: list[Any]) -> str:
    bounds = {}
    for meta in limits:
        for name in ("gt", "ge", "lt", "le"):
            if hasattr(meta, name):
                bounds[name] = getattr(meta, name)
    if "ge" in bounds and "le" in bounds:
        return f"between {bounds['ge']} and {bounds['le']}"
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{symbols[name]} {value}" for name, value in bounds.items())


def _strip_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1:
            return _unwrap(args[0])[0]
    return _unwrap(annotation)[0]


def _item_type(annotation: Any) -> Any:
    """The element type of list[X] / the value type of dict[str, X] (Optional stripped)."""
    inner = _strip_none(annotation)
    args = get_args(inner)
    return args[-1] if args else Any


def _is_dict(annotation: Any) -> bool:
    return get_origin(_strip_none(annotation)) is dict


def _model_in(annotation: Any) -> type[BaseModel] | None:
    inner = _strip_none(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def got(value: Any) -> str:
    """What the user wrote, named in TOML terms: 'a string "big"'."""
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, dict):
        return "a table"
    else:
        kind = "a date/time"
    return f"{kind} {toml_value(value)}"

"""Published HumanEval / HumanEval+ scores (references.json, package data) and which of
them belong to a local model, so a report can show the difference."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Reference:
    name: str
    kind: str  # "proprietary" or "open"
    humaneval: float | None  # percent
    humaneval_plus: float | None
    source: str  # key into sources()
    match: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    """Words that make a name not this model (GLM-4.7 is not GLM-4.7 Flash)."""

    def to_json(self) -> dict:
        return {**self.__dict__, "match": list(self.match), "exclude": list(self.exclude)}


@cache
def _data() -> dict:
    text = resources.files("llamaherd.bench").joinpath("references.json").read_text("utf-8")
    return json.loads(text)


def references() -> list[Reference]:
    return [
        Reference(
            name=m["name"],
            kind=m["kind"],
            humaneval=m.get("humaneval"),
            humaneval_plus=m.get("humaneval_plus"),
            source=m["source"],
            match=tuple(m["match"]),
            exclude=tuple(m.get("exclude", ())),
        )
        for m in _data()["models"]
    ]


def sources() -> dict[str, dict]:
    return _data()["sources"]


def _words(text: str) -> str:
    """'Qwen3-Coder-Next UD_Q5' -> 'qwen3-coder-next-ud-q5': one spelling to search in."""
    return re.sub(r"[\s_/]+", "-", text.lower())


def matching(*names: str) -> list[Reference]:
    """References whose every match word appears in one of `names` (a profile's id,
    name, or an endpoint's model), the most specific (most words) first, and within
    one source only the most specific, so 'gpt-4o-mini' is not also called GPT-4o."""
    haystacks = [_words(n) for n in names if n]
    found = [
        r
        for r in references()
        if any(
            all(_words(word) in hay for word in r.match)
            and not any(_words(word) in hay for word in r.exclude)
            for hay in haystacks
        )
    ]
    found.sort(key=lambda r: (-len(r.match), -sum(len(w) for w in r.match)))
    best: dict[str, Reference] = {}
    for ref in found:
        best.setdefault(ref.source, ref)
    return list(best.values())

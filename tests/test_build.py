"""herd build: the cmake flags per backend, and the cached build is reused."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from llamaherd import control
from llamaherd.errors import UsageError
from llamaherd.gguf import synth
from llamaherd.llamacpp import build, cmake


def test_cpu_flags_build_static_rpc_capable_programs() -> None:
    args = cmake.cmake_args("cpu", build_number=11434, ccache=None)
    assert "-DGGML_RPC=ON" in args
    assert "-DBUILD_SHARED_LIBS=OFF" in args
    assert "-DLLAMA_BUILD_UI=OFF" in args  # no npm needed
    assert "-DGGML_NATIVE=ON" in args
    assert "-DLLAMA_BUILD_NUMBER=11434" in args
    assert not any("LAUNCHER" in a for a in args)


def test_web_ui_is_built_with_npm_only_when_asked() -> None:
    with_npm = cmake.cmake_args("cpu", build_number=None, ccache=None, ui_with_npm=True)
    assert "-DLLAMA_BUILD_UI=ON" in with_npm
    assert "-DLLAMA_USE_PREBUILT_UI=ON" in with_npm  # the fallback when npm fails


def test_ui_without_npm_is_a_usage_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "CMakeLists.txt").write_text("")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere
    with pytest.raises(UsageError, match="npm, which is not installed"):
        build.build(source=tmp_path, ui=True)


@pytest.mark.parametrize(
    ("machine", "native", "amx_off"),
    [("x86_64", True, True), ("x86_64", False, False), ("aarch64", True, False)],
)
def test_native_x86_builds_leave_amx_out(machine: str, native: bool, amx_off: bool) -> None:
    args = cmake.cmake_args("cpu", build_number=None, ccache=None, native=native, machine=machine)
    assert (f"-DCMAKE_CXX_FLAGS={cmake.NO_AMX}" in args) is amx_off
    assert (f"-DCMAKE_C_FLAGS={cmake.NO_AMX}" in args) is amx_off


def test_a_q8_0_model_loads_and_answers(make_herd, model_files) -> None:
    """Q8_0 takes the quantized CPU kernels (AMX ones on CPUs that have it: SIGILL there
    before NO_AMX)."""
    synth.write(model_files / "q8.gguf", synth.Shape(weight_type="Q8_0", n_embd=128, n_ff=256))
    herd = make_herd('\n[models.q8]\nfile = "q8.gguf"\nctx = 512\n')
    assert control.up(herd, "q8").ok
    request = {"model": "q8", "prompt": "llamas", "max_tokens": 4}
    answer = httpx.post(f"{herd.server.public_url}/v1/completions", json=request, timeout=60)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] > 0


def test_ccache_is_used_when_present() -> None:
    args = cmake.cmake_args("cpu", build_number=None, ccache="/usr/bin/ccache")
    assert "-DCMAKE_CXX_COMPILER_LAUNCHER=/usr/bin/ccache" in args
    assert not any(a.startswith("-DLLAMA_BUILD_NUMBER") for a in args)


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown backend 'rocm'"):
        cmake.cmake_args("rocm", build_number=None, ccache=None)


def test_source_without_cmakelists_is_rejected(tmp_path) -> None:
    with pytest.raises(UsageError, match="no CMakeLists.txt"):
        build.build(source=tmp_path)


def test_second_build_does_nothing_and_says_so(llama_server) -> None:
    if llama_server != build.pinned_build_dir() / "bin" / "llama-server":
        pytest.skip("tests use a llama-server from outside herd's cache")
    before = llama_server.stat().st_mtime
    result = subprocess.run(
        [sys.executable, "-m", "llamaherd", "build"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "already built and up to date" in result.stdout
    assert llama_server.stat().st_mtime == before

"""herd build for GPUs: cmake flags per backend and arch set, arch detection, nvcc checks.

No GPU and no real CUDA toolkit here: NVML is the file-backed fake GpuSource, nvcc and
nvidia-smi are small scripts on PATH that answer what the real ones print.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inprocess import herd

from llamaherd import doctor
from llamaherd.errors import UsageError
from llamaherd.llamacpp import build, cmake, cuda


def fake_tool(directory: Path, name: str, output: str) -> Path:
    directory.mkdir(exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    tool.chmod(0o755)
    return tool


@pytest.fixture
def nvcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put an nvcc of a chosen CUDA release first on PATH."""

    def install(release: str) -> Path:
        bin_dir = tmp_path / "bin"
        text = f"nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release {release}"
        tool = fake_tool(bin_dir, "nvcc", text)
        monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        return tool

    return install


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def install(*caps: str | None) -> None:
        gpus = [{"name": f"GPU {i}", "compute_cap": cap} for i, cap in enumerate(caps)]
        path = tmp_path / "gpus.json"
        path.write_text(json.dumps({"gpus": gpus}))
        monkeypatch.setenv("HERD_FAKE_GPUS", str(path))

    return install


# -- cmake arguments, a pure function ------------------------------------------------


def test_cuda_flags_name_exactly_the_archs_as_real_sass() -> None:
    args = cmake.cmake_args(
        "cuda", build_number=11434, ccache=None, cuda_archs=[120, 89, 89], nvcc="/opt/nvcc"
    )
    assert "-DGGML_CUDA=ON" in args
    assert "-DCMAKE_CUDA_ARCHITECTURES=89-real;120-real" in args
    assert "-DCMAKE_CUDA_COMPILER=/opt/nvcc" in args
    assert "-DGGML_RPC=ON" in args and "-DBUILD_SHARED_LIBS=OFF" in args
    assert "-DGGML_VULKAN=ON" not in args


def test_single_arch_and_ccache_for_cuda() -> None:
    args = cmake.cmake_args("cuda", build_number=None, ccache="/usr/bin/ccache", cuda_archs=[90])
    assert "-DCMAKE_CUDA_ARCHITECTURES=90-real" in args
    assert "-DCMAKE_CUDA_COMPILER_LAUNCHER=/usr/bin/ccache" in args
    assert not any(a.startswith("-DCMAKE_CUDA_COMPILER=") for a in args)


def test_cuda_without_archs_is_refused() -> None:
    with pytest.raises(UsageError, match="--cuda-arch"):
        cmake.cmake_args("cuda", build_number=None, ccache=None)


@pytest.mark.parametrize(
    ("backend", "present", "absent"),
    [
        ("cpu", ["-DGGML_NATIVE=ON"], ["-DGGML_CUDA=ON", "-DGGML_VULKAN=ON"]),
        ("vulkan", ["-DGGML_VULKAN=ON", "-DGGML_NATIVE=ON"], ["-DGGML_CUDA=ON"]),
    ],
)
def test_cpu_and_vulkan_flags(backend: str, present: list[str], absent: list[str]) -> None:
    args = cmake.cmake_args(backend, build_number=None, ccache=None)
    assert set(present) <= set(args)
    assert not set(absent) & set(args)
    assert not any("CUDA_ARCHITECTURES" in a for a in args)


def test_portable_build_turns_native_cpu_code_off() -> None:
    args = cmake.cmake_args("cuda", build_number=None, ccache=None, cuda_archs=[89], native=False)
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_NATIVE=ON" not in args


# -- architectures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "archs"),
    [("89,120", [89, 120]), ("8.9, 12.0", [89, 120]), ("sm_90", [90]), ("120;89;89", [89, 120])],
)
def test_cuda_arch_option_forms(text: str, archs: list[int]) -> None:
    assert cuda.parse_archs(text) == archs


@pytest.mark.parametrize("text", ["8x", "ampere", ","])
def test_bad_cuda_arch_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--cuda-arch"):
        cuda.parse_archs(text)


def test_archs_detected_from_nvml(fake_gpus) -> None:
    fake_gpus("8.9", "12.0", "8.9")
    assert cuda.detect_archs() == [89, 120]


def test_archs_from_nvidia_smi_when_nvml_has_none(fake_gpus, tmp_path, monkeypatch) -> None:
    fake_gpus()  # NVML answers, but without GPUs
    bin_dir = tmp_path / "smi"
    fake_tool(bin_dir, "nvidia-smi", "8.6\n12.0")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert cuda.detect_archs() == [86, 120]


# -- nvcc ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "archs", "problem"),
    [
        ("12.8", [89, 120], None),
        ("13.0", [89, 120], None),
        ("12.4", [89, 120], "sm_120 needs CUDA 12.8 or newer"),
        ("11.7", [89], "sm_89 needs CUDA 11.8 or newer"),
        ("13.0", [61], "sm_61 was dropped in CUDA 13.0"),
        ("13.0", [150], "newer than any CUDA release"),
    ],
)
def test_nvcc_support_per_arch(release: str, archs: list[int], problem: str | None) -> None:
    major, minor = release.split(".")
    found = cuda.unsupported(archs, cuda.Nvcc(Path("nvcc"), (int(major), int(minor))))
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]


def test_resolve_checks_the_nvcc_on_path(nvcc, fake_gpus) -> None:
    tool = nvcc("12.4")
    fake_gpus("8.9", "12.0")
    with pytest.raises(UsageError, match=r"nvcc 12.4 .* sm_120 needs CUDA 12.8") as error:
        cuda.resolve(None)
    assert str(tool) in str(error.value)
    archs, found = cuda.resolve("89")  # the override needs no newer nvcc
    assert archs == [89] and found.version == (12, 4) and found.path == tool


def test_no_gpu_and_no_override_says_how(nvcc, fake_gpus) -> None:
    nvcc("12.8")
    fake_gpus()
    with pytest.raises(UsageError, match="--cuda-arch"):
        cuda.resolve(None)


def test_no_nvcc_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(cuda, "DEFAULT_HOMES", ())
    with pytest.raises(UsageError, match="install the CUDA toolkit"):
        cuda.resolve("89")


def test_cli_refuses_old_nvcc_with_one_line_and_exit_2(nvcc, capsys, monkeypatch) -> None:
    nvcc("12.6")
    code, _, err = herd(capsys, monkeypatch, "build", "--backend", "cuda", "--cuda-arch", "120")
    assert code == 2
    assert err.count("\n") == 1
    assert "sm_120 needs CUDA 12.8 or newer; install CUDA toolkit >= 12.8" in err


def test_doctor_cli_fails_on_old_nvcc(nvcc, fake_gpus, capsys, monkeypatch) -> None:
    nvcc("12.4")
    fake_gpus("12.0")
    code, out, _ = herd(capsys, monkeypatch, "doctor")
    assert code == 1
    assert "FAIL cuda" in out and "sm_120 needs CUDA 12.8" in out


def test_cuda_arch_without_cuda_backend_is_refused() -> None:
    with pytest.raises(UsageError, match="--backend cuda"):
        build.build(backend="cpu", cuda_arch="89")


def test_unknown_target_is_refused(tmp_path) -> None:
    with pytest.raises(UsageError, match="unknown target"):
        build.build(source=tmp_path, targets=["llama-cli"])


def test_doctor_says_nvcc_is_too_old_for_the_gpus(nvcc, fake_gpus, tmp_path) -> None:
    nvcc("12.4")
    fake_gpus("8.9", "12.0")
    section = doctor._cuda()
    assert section["archs"] == [89, 120] and section["release"] == "12.4"
    assert not section["ok"] and "sm_120 needs CUDA 12.8" in section["problems"][0]
    nvcc("12.8")
    assert doctor._cuda()["ok"]


def test_vulkan_without_glslc_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="apt install glslc libvulkan-dev"):
        build.build(source=tmp_path, backend="vulkan")

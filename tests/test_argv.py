"""The llama-server command line: each profile setting becomes its flag, next to its value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llamaherd.config import Placement, Profile, Sampling
from llamaherd.runtime.argv import format_value, server_argv, server_env

BINARY = Path("/opt/llama/llama-server")
MODEL = Path("/models/a.gguf")
BASE = [
    str(BINARY),
    *("-m", str(MODEL)),
    *("--host", "127.0.0.1"),
    *("--port", "9001"),
    *("--alias", "a"),
    "--metrics",
    "--slots",
]


def argv_for(**fields: Any) -> list[str]:
    profile = Profile(id="a", file=MODEL, **fields)
    return server_argv(BINARY, profile, host="127.0.0.1", port=9001)


def assert_pair(argv: list[str], flag: str, value: str) -> None:
    """`flag` appears once, immediately followed by `value`."""
    assert argv.count(flag) == 1, argv
    assert argv[argv.index(flag) + 1] == value, argv


def test_nothing_set_gives_the_base_argv() -> None:
    assert argv_for() == BASE


def test_base_argv_uses_host_port_and_alias() -> None:
    profile = Profile(id="glm-q4", file=MODEL)
    argv = server_argv(BINARY, profile, host="0.0.0.0", port=1234)
    assert argv[0] == str(BINARY)
    assert_pair(argv, "-m", str(MODEL))
    assert_pair(argv, "--host", "0.0.0.0")
    assert_pair(argv, "--port", "1234")
    assert_pair(argv, "--alias", "glm-q4")


def test_jinja_is_not_added_because_it_is_llama_cpps_default() -> None:
    assert "--jinja" not in argv_for()


@pytest.mark.parametrize(
    ("fields", "flag", "value"),
    [
        ({"ctx": 32768}, "-c", "32768"),
        ({"ctx": 0}, "-c", "0"),
        ({"parallel": 2}, "-np", "2"),
        ({"threads": 8}, "-t", "8"),
        ({"flash_attn": "on"}, "-fa", "on"),
        ({"cache_type_k": "q8_0"}, "-ctk", "q8_0"),
        ({"cache_type_v": "q4_0"}, "-ctv", "q4_0"),
    ],
)
def test_profile_options(fields: dict[str, Any], flag: str, value: str) -> None:
    assert_pair(argv_for(**fields), flag, value)


@pytest.mark.parametrize(
    ("field", "given", "flag", "value"),
    [
        ("temperature", 0.7, "--temp", "0.7"),
        ("top_p", 0.95, "--top-p", "0.95"),
        ("top_k", 40, "--top-k", "40"),
        ("min_p", 0.01, "--min-p", "0.01"),
        ("repeat_penalty", 1.1, "--repeat-penalty", "1.1"),
        ("presence_penalty", 1.5, "--presence-penalty", "1.5"),
        ("frequency_penalty", -0.5, "--frequency-penalty", "-0.5"),
        ("seed", 42, "--seed", "42"),
    ],
)
def test_sampling_options(field: str, given: float, flag: str, value: str) -> None:
    assert_pair(argv_for(sampling=Sampling(**{field: given})), flag, value)


@pytest.mark.parametrize(
    ("field", "given", "flag", "value"),
    [
        ("fit", True, "--fit", "on"),
        ("fit", False, "--fit", "off"),
        ("fit_target", [1024, 512], "--fit-target", "1024,512"),
        ("n_gpu_layers", 99, "-ngl", "99"),
        ("n_gpu_layers", "auto", "-ngl", "auto"),
        ("n_gpu_layers", "all", "-ngl", "all"),
        ("tensor_split", [24, 16], "--tensor-split", "24,16"),
        ("tensor_split", [0.6, 0.4], "--tensor-split", "0.6,0.4"),
        ("n_cpu_moe", 12, "--n-cpu-moe", "12"),
        ("override_tensor", ["exps=CPU"], "--override-tensor", "exps=CPU"),
        ("override_tensor", ["a=CPU", "b=CUDA0"], "--override-tensor", "a=CPU,b=CUDA0"),
        ("main_gpu", 1, "--main-gpu", "1"),
        ("devices", ["CUDA0", "CUDA1"], "--device", "CUDA0,CUDA1"),
    ],
)
def test_placement_options(field: str, given: Any, flag: str, value: str) -> None:
    assert_pair(argv_for(placement=Placement(**{field: given})), flag, value)


def test_args_are_passed_through_last() -> None:
    argv = argv_for(ctx=4096, args=["-c", "8192", "--reasoning-format", "none"])
    assert argv[-4:] == ["-c", "8192", "--reasoning-format", "none"]
    assert argv.index("--slots") < len(argv) - 4


def test_metrics_and_slots_always_on() -> None:
    argv = argv_for(ctx=1, sampling=Sampling(top_k=1), placement=Placement(fit=True))
    assert "--metrics" in argv and "--slots" in argv


def test_everything_set_keeps_every_pair() -> None:
    argv = argv_for(
        ctx=2048,
        flash_attn="auto",
        sampling=Sampling(temperature=1.0, top_p=0.8),
        placement=Placement(n_gpu_layers="all", devices=["CUDA0"]),
    )
    assert argv[: len(BASE) - 2] == BASE[:-2]
    for flag, value in [("-c", "2048"), ("-fa", "auto"), ("--temp", "1"), ("-ngl", "all")]:
        assert_pair(argv, flag, value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.95, "0.95"),
        (0.1 + 0.2, "0.3"),
        (0.9500000000000001, "0.95"),
        (1.0, "1"),
        (24.0, "24"),
        (1e-5, "1e-05"),
        (True, "on"),
        (7, "7"),
        ([0.5, 0.25], "0.5,0.25"),
    ],
)
def test_values_are_formatted_without_noise(value: Any, text: str) -> None:
    assert format_value(value) == text


def test_server_env_puts_profile_env_over_base() -> None:
    profile = Profile(id="a", file=MODEL, env={"CUDA_VISIBLE_DEVICES": "1", "NEW": "x"})
    base = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
    assert server_env(profile, base) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "NEW": "x"}
    assert base == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}  # not modified

"""`[defaults]` and `herd import`: the original setup's models.conf (with its compose
file's defaults), llama-swap's config.yaml and llama.cpp's router preset INI become a
herd.toml that loads, and every line herd could not map is reported."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_herd

from llamaherd.config import load_config, parse_config
from llamaherd.errors import ConfigError

# --------------------------------------------------------------------------------------
# [defaults]
# --------------------------------------------------------------------------------------

DEFAULTS = """\
[defaults]
flash_attn = "on"
cache_type_k = "q8_0"
ctx = 8192
args = ["--split-mode", "layer"]
sampling = { temperature = 0.7, top_p = 0.9 }
placement = { fit = true, main_gpu = 0 }

[models.base]
file = "a.gguf"
speed_hint = "~147 t/s"
ctx = 4096
sampling = { top_p = 0.95 }

[models.child]
extends = "base"
flash_attn = "off"
args = ["--jinja"]

[models.plain]
file = "b.gguf"
"""


def test_defaults_apply_to_every_profile_under_extends_and_own_keys(tmp_path: Path) -> None:
    config = parse_config(DEFAULTS, tmp_path / "herd.toml", check_files=False)
    base, child, plain = (config.models[k] for k in ("base", "child", "plain"))
    assert (plain.flash_attn, plain.cache_type_k, plain.ctx) == ("on", "q8_0", 8192)
    assert plain.placement.fit is True and plain.placement.main_gpu == 0
    assert plain.args == ["--split-mode", "layer"]
    # own keys win over the defaults; tables merge key by key
    assert base.ctx == 4096
    assert (base.sampling.temperature, base.sampling.top_p) == (0.7, 0.95)
    # extends sits between: the parent's keys over the defaults, the child's over both
    assert (child.ctx, child.flash_attn, child.cache_type_k) == (4096, "off", "q8_0")
    # a profile's args follow the defaults' (llama-server takes the last of a flag)
    assert child.args == ["--split-mode", "layer", "--jinja"]
    assert base.speed_hint == "~147 t/s" and plain.speed_hint == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("ctxx = 4096", "defaults.ctxx: unknown key 'ctxx'"),
        ('flash_attn = "maybe"', "defaults.flash_attn: invalid value"),
        ('aliases = ["x"]', "'aliases' cannot be a default"),
        ('extends = "plain"', "'extends' cannot be a default"),
    ],
)
def test_a_mistake_in_defaults_is_reported_at_defaults(
    tmp_path: Path, table: str, message: str
) -> None:
    text = f'[defaults]\n{table}\n\n[models.plain]\nfile = "b.gguf"\n'
    with pytest.raises(ConfigError) as error:
        parse_config(text, tmp_path / "herd.toml", check_files=False)
    assert message in str(error.value)
    assert "defaults" in str(error.value)


# --------------------------------------------------------------------------------------
# herd import
# --------------------------------------------------------------------------------------

MODELS_CONF = r"""# models.conf, as the original setup wrote it
[glm-flash-q4]
NAME=GLM-4.7 Flash Q4_K_M
DESCRIPTION=Fast tasks, reasoning
SPEED=~147 t/s
MODEL=GLM-4.7-Flash/GLM-4.7-Flash-Q4_K_M.gguf
CTX_SIZE=131072
N_GPU_LAYERS=99
FIT=on
EXTRA_ARGS=--jinja -np 1 --temp 1.0 --top-p 0.95 --min-p 0.01

[gpt-oss-120b]
NAME=GPT-OSS 120B F16
MODEL=GPT-OSS-120b/gpt-oss-120b-F16.gguf
CTX_SIZE=65536
FIT=off
FIT_TARGET=1024,512
MIRROR=yes
EXTRA_ARGS=-np 1 -b 4096 -ot blk\.([0-9]|1[01])\.=CUDA0,exps=CPU --n-cpu-moe 24 -fa on -ctk q8_0
"""

COMPOSE = """\
services:
  llama-server:
    build: .
    ports:
      - "8080:8080"
    environment:
      - MODEL=/models/${MODEL:-model.gguf}
      - CTX_SIZE=${CTX_SIZE:-131072}
      - SPLIT_MODE=${SPLIT_MODE:-layer}
      - TENSOR_SPLIT=${TENSOR_SPLIT:-}
      - MAIN_GPU=${MAIN_GPU:-0}
      - FLASH_ATTN=${FLASH_ATTN:-1}
      - KV_CACHE_TYPE_K=${KV_CACHE_TYPE_K:-q8_0}
      - KV_CACHE_TYPE_V=${KV_CACHE_TYPE_V:-q8_0}
      - FIT=${FIT:-on}
      - EXTRA_ARGS=${EXTRA_ARGS:-}
"""

EXISTING = """\
# my herd, hand-written: this comment must survive `herd import`
models_dir = "models"

[models.glm-flash-q4]   # mine
file = "mine.gguf"
"""


def _herd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_herd("import", *args, "--config", str(tmp_path / "herd.toml"), timeout=60)


def test_models_conf_and_compose_become_profiles_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "models.conf").write_text(MODELS_CONF)
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    done = _herd(
        tmp_path, str(tmp_path / "models.conf"), "--compose", str(tmp_path / "docker-compose.yml")
    )
    assert done.returncode == 0, done.stderr
    config = load_config(tmp_path / "herd.toml", check_files=False)
    glm, oss = config.models["glm-flash-q4"], config.models["gpt-oss-120b"]
    assert glm.file == tmp_path / "models" / "GLM-4.7-Flash" / "GLM-4.7-Flash-Q4_K_M.gguf"
    assert (glm.name, glm.best_for, glm.speed_hint) == (
        "GLM-4.7 Flash Q4_K_M",
        "Fast tasks, reasoning",
        "~147 t/s",
    )
    assert (glm.ctx, glm.parallel, glm.placement.n_gpu_layers, glm.placement.fit) == (
        131072,
        1,
        99,
        True,
    )
    assert (glm.sampling.temperature, glm.sampling.top_p, glm.sampling.min_p) == (1.0, 0.95, 0.01)
    # the compose file's defaults reach every profile; the profile's own keys win
    assert (glm.flash_attn, glm.cache_type_k, glm.cache_type_v, glm.placement.main_gpu) == (
        "on",
        "q8_0",
        "q8_0",
        0,
    )
    assert glm.args == ["--split-mode", "layer", "--jinja"]
    assert oss.placement.fit is False and oss.placement.fit_target == [1024, 512]
    assert oss.placement.override_tensor == [r"blk\.([0-9]|1[01])\.=CUDA0", "exps=CPU"]
    assert oss.placement.n_cpu_moe == 24 and oss.ctx == 65536
    assert oss.args == ["--split-mode", "layer", "-b", "4096"]
    # what herd could not map is reported, with where it was
    assert "models.conf:18: MIRROR=yes: unknown key" in done.stderr
    assert "TENSOR_SPLIT: empty" in done.stderr
    assert "build, ports: not imported" in done.stderr


def test_existing_file_keeps_its_comments_and_profiles_without_force(tmp_path: Path) -> None:
    (tmp_path / "models.conf").write_text(MODELS_CONF)
    (tmp_path / "herd.toml").write_text(EXISTING)
    done = _herd(tmp_path, str(tmp_path / "models.conf"))
    assert done.returncode == 0, done.stderr
    assert "pass --force to replace it" in done.stderr or "--force" in done.stderr
    text = (tmp_path / "herd.toml").read_text()
    assert text.startswith(EXISTING)  # comments, layout and my profile untouched
    config = load_config(tmp_path / "herd.toml", check_files=False)
    assert config.models["glm-flash-q4"].file.name == "mine.gguf"
    assert config.models["gpt-oss-120b"].ctx == 65536
    # the file's models_dir is not the original's: the imported path points at the file
    assert (
        config.models["gpt-oss-120b"].file
        == tmp_path / "models" / "GPT-OSS-120b" / "gpt-oss-120b-F16.gguf"
    )

    done = _herd(tmp_path, str(tmp_path / "models.conf"), "--force")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "herd.toml").read_text()
    assert "# my herd, hand-written" in text and "# mine" in text
    assert (
        load_config(tmp_path / "herd.toml", check_files=False).models["glm-flash-q4"].ctx == 131072
    )


def test_dry_run_prints_the_file_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "models.conf").write_text(MODELS_CONF)
    (tmp_path / "herd.toml").write_text(EXISTING)
    done = _herd(tmp_path, str(tmp_path / "models.conf"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "herd.toml").read_text() == EXISTING
    assert "[models.gpt-oss-120b]" in done.stdout and "would write" in done.stdout
    parse_config(done.stdout.rsplit("would write", 1)[0], tmp_path / "herd.toml", check_files=False)


LLAMA_SWAP = """\
healthCheckTimeout: 500
macros:
  "server": /opt/llama.cpp/llama-server --port ${PORT} --host 127.0.0.1
  "gpu": -ngl 99 -fa on
models:
  "qwen-coder":
    name: "Qwen 2.5 Coder"
    description: "coding"
    cmd: |
      ${server} ${gpu}
      -m /models/qwen2.5-coder-7b-q4_k_m.gguf
      --ctx-size 16384 --temp 0.7
      --cache-reuse 256
    aliases:
      - gpt-4o-mini
    ttl: 300
    env:
      - "CUDA_VISIBLE_DEVICES=0"
    checkEndpoint: /health
  "embed":
    cmd: ${server} -m /models/nomic.gguf --embeddings
    unlisted: true
  "docker-model":
    cmd: docker run --rm vllm/vllm-openai
groups:
  "always":
    persistent: true
    swap: false
    members: ["qwen-coder", "embed"]
"""


def test_llama_swap_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(LLAMA_SWAP)
    done = _herd(tmp_path, str(tmp_path / "config.yaml"))
    assert done.returncode == 0, done.stderr
    config = load_config(tmp_path / "herd.toml", check_files=False)
    coder = config.models["qwen-coder"]
    assert coder.file == Path("/models/qwen2.5-coder-7b-q4_k_m.gguf")
    assert (coder.name, coder.best_for, coder.aliases, coder.ttl) == (
        "Qwen 2.5 Coder",
        "coding",
        ["gpt-4o-mini"],
        300,
    )
    assert (
        coder.placement.n_gpu_layers,
        coder.flash_attn,
        coder.ctx,
        coder.sampling.temperature,
    ) == (99, "on", 16384, 0.7)
    assert coder.env == {"CUDA_VISIBLE_DEVICES": "0"} and coder.args == ["--cache-reuse", "256"]
    assert coder.persistent and config.models["embed"].args == ["--embeddings"]
    assert "docker-model" not in config.models
    for reported in (
        "healthCheckTimeout",
        "--port ${PORT}",
        "--host 127.0.0.1",
        "unlisted",
        "checkEndpoint",
        "cmd does not run llama-server",
        "max_loaded = 2",
    ):
        assert reported in done.stderr, reported


PRESET = """\
version = 1

[*]
c = 8192
n-gpu-layers = 99
LLAMA_ARG_FLASH_ATTN = on

[my-model]
model = /models/my-model-Q4_K_M.gguf
temp = 0.6
jinja = true
load-on-startup = true

[ggml-org/gemma-3-4b-it-GGUF:Q4_K_M]
n-gpu-layers = 20
"""


def test_llama_cpp_preset_ini(tmp_path: Path) -> None:
    (tmp_path / "presets.ini").write_text(PRESET)
    done = _herd(tmp_path, str(tmp_path / "presets.ini"))
    assert done.returncode == 0, done.stderr
    config = load_config(tmp_path / "herd.toml", check_files=False)
    assert list(config.models) == ["my-model"]
    mine = config.models["my-model"]
    assert (mine.ctx, mine.placement.n_gpu_layers, mine.flash_attn) == (8192, 99, "on")  # [*]
    assert mine.sampling.temperature == 0.6 and mine.args == ["--jinja"]
    assert "load-on-startup: not imported" in done.stderr
    assert "herd add ggml-org/gemma-3-4b-it-GGUF:Q4_K_M" in done.stderr

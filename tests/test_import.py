"""`[defaults]` and `herd import`: the original setup's models.conf (with its compose
file's defaults), llama-swap's config.yaml and llama.cpp's router preset INI become a
herd.toml that loads, and every line herd could not map is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaherd.config import parse_config
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

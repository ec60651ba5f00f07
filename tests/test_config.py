"""herd.toml loading: every kind of mistake is one line naming the file, the profile, the
key and a hint; good configs resolve paths, extends and aliases as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaherd import profiles
from llamaherd.config import (
    Config,
    Profile,
    ServerSettings,
    find_config_path,
    load_config,
    parse_config,
)
from llamaherd.config.checks import missing_model_file
from llamaherd.config.locate import daemon_address
from llamaherd.errors import ConfigError, UsageError

GOOD = """\
models_dir = "models"
default_model = "glm"

[server]
port = 9080
api_port = 9081

[models.glm]
name = "GLM Flash"
file = "glm.gguf"
ctx = 32768
aliases = ["fast"]
env = { CUDA_VISIBLE_DEVICES = "0", GGML_X = "1" }

[models.glm.sampling]
temperature = 1.0
top_p = 0.95

[models.glm.placement]
fit = true
tensor_split = [24, 16]

[models.bench-glm]
extends = "glm"
ctx = 8192
aliases = ["bench"]
env = { GGML_X = "2" }
sampling = { top_p = 1.0 }
placement = { tensor_split = [1] }
"""


def write(directory: Path, text: str, *ggufs: str) -> Path:
    """herd.toml in `directory`, plus placeholder GGUF files under models/."""
    for name in ggufs:
        gguf = directory / "models" / name
        gguf.parent.mkdir(parents=True, exist_ok=True)
        gguf.write_bytes(b"GGUF")
    path = directory / "herd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str, *, check_files: bool = False) -> ConfigError:
    path = write(tmp_path, text, "a.gguf")
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_files=check_files)
    error = caught.value
    message = str(error)
    assert str(path) in message, "the message names the file"
    assert "\n" not in message, "one line"
    assert error.hint and error.hint in message, "every mistake comes with a hint"
    return error


def profile(body: str, pid: str = "a") -> str:
    """One valid profile with `body` added to its table."""
    return f'models_dir = "models"\n\n[models.{pid}]\nfile = "a.gguf"\n{body}\n'


# -- good configs ------------------------------------------------------------------


def test_good_config_loads_with_resolved_paths(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, "glm.gguf")
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.path == path
    assert config.models_dir == tmp_path / "models"
    assert config.default_model == "glm"
    assert config.server == ServerSettings(port=9080, api_port=9081)
    glm = config.models["glm"]
    assert glm.file == tmp_path / "models" / "glm.gguf"
    assert glm.file.is_absolute()
    assert glm.name == "GLM Flash"
    assert glm.sampling.temperature == 1.0
    assert glm.placement.fit is True


def test_defaults_when_keys_are_left_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[models.a]\nfile = "a.gguf"\n', "a.gguf"))
    assert config.models_dir == tmp_path / "models"  # default: next to herd.toml
    assert config.llama_server is None
    assert config.default_model is None
    assert config.server == ServerSettings()
    assert (config.server.host, config.server.port, config.server.api_port) == (
        "127.0.0.1",
        8080,
        8081,
    )
    a = config.models["a"]
    assert a.name == "a"  # name defaults to the id
    assert (a.ctx, a.args, a.env, a.aliases, a.best_for) == (None, [], {}, [], "")


def test_extends_merges_tables_and_replaces_lists(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD, "glm.gguf"))
    bench = config.models["bench-glm"]
    assert bench.extends == "glm"
    assert bench.file == config.models["glm"].file  # inherited
    assert bench.name == "GLM Flash"  # inherited too
    assert bench.ctx == 8192  # overridden
    assert bench.sampling.temperature == 1.0 and bench.sampling.top_p == 1.0  # merged by key
    assert bench.placement.fit is True and bench.placement.tensor_split == [1.0]  # list replaced
    assert bench.env == {"CUDA_VISIBLE_DEVICES": "0", "GGML_X": "2"}
    assert bench.aliases == ["bench"]  # not inherited


def test_extends_chain_and_parent_declared_after_child(tmp_path: Path) -> None:
    text = (
        '[models.c]\nextends = "b"\n\n[models.b]\nextends = "a"\nctx = 4096\n\n'
        '[models.a]\nfile = "a.gguf"\nctx = 2048\nthreads = 4\n'
    )
    config = load_config(write(tmp_path, text, "a.gguf"))
    assert list(config.models) == ["c", "b", "a"]  # file order is kept
    c = config.models["c"]
    assert (c.ctx, c.threads, c.file.name) == (4096, 4, "a.gguf")


def test_child_without_own_aliases_inherits_none(tmp_path: Path) -> None:
    text = profile('aliases = ["x"]') + '\n[models.b]\nextends = "a"\n'
    config = load_config(write(tmp_path, text, "a.gguf"))
    assert config.models["b"].aliases == []


def test_resolve_by_id_and_alias(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD, "glm.gguf"))
    assert config.resolve("glm").id == "glm"
    assert config.resolve("fast").id == "glm"
    assert config.resolve("bench").id == "bench-glm"


def test_resolve_unknown_suggests_and_lists(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD, "glm.gguf"))
    with pytest.raises(UsageError) as caught:
        config.resolve("glmm")
    assert str(caught.value) == "unknown model 'glmm'; did you mean 'glm'? known: bench-glm, glm"
    assert caught.value.exit_code == 2


def test_default_model_may_be_an_alias_and_is_stored_as_id(tmp_path: Path) -> None:
    text = GOOD.replace('default_model = "glm"', 'default_model = "bench"')
    config = load_config(write(tmp_path, text, "glm.gguf"))
    assert config.default_model == "bench-glm"


def test_relative_models_dir_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.gguf").write_bytes(b"GGUF")
    path = conf_dir / "herd.toml"
    path.write_text('models_dir = "../weights"\n[models.a]\nfile = "a.gguf"\n')
    config = load_config(path)
    assert config.models_dir == tmp_path / "weights"
    assert config.models["a"].file == tmp_path / "weights" / "a.gguf"


def test_home_is_expanded_and_absolute_file_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    absolute = tmp_path / "abs.gguf"
    text = (
        'models_dir = "~/models"\nllama_server = "bin/llama-server"\n'
        f'[models.a]\nfile = "a.gguf"\n[models.b]\nfile = "{absolute}"\n'
    )
    config = parse_config(text, tmp_path / "herd.toml", check_files=False)
    assert config.models_dir == tmp_path / "home" / "models"
    assert config.models["a"].file == tmp_path / "home" / "models" / "a.gguf"
    assert config.models["b"].file == absolute
    assert config.llama_server == tmp_path / "bin" / "llama-server"


def test_parse_config_without_path_uses_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config('[models.a]\nfile = "a.gguf"\n', check_files=False)
    assert config.path is None
    assert config.models["a"].file == tmp_path / "models" / "a.gguf"


def test_non_loopback_host_with_api_key_is_allowed(tmp_path: Path) -> None:
    text = '[server]\nhost = "0.0.0.0"\napi_key = "secret"\n'
    assert load_config(write(tmp_path, text)).server.host == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_need_no_api_key(tmp_path: Path, host: str) -> None:
    assert load_config(write(tmp_path, f'[server]\nhost = "{host}"\n')).server.host == host


def test_args_may_override_herd_choices(tmp_path: Path) -> None:
    text = profile('ctx = 4096\nargs = ["-c", "8192", "--reasoning-format", "none"]')
    config = load_config(write(tmp_path, text, "a.gguf"))
    assert config.models["a"].args == ["-c", "8192", "--reasoning-format", "none"]


def test_ctx_zero_means_the_models_own_context(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, profile("ctx = 0"), "a.gguf"))
    assert config.models["a"].ctx == 0


def test_integers_are_accepted_where_numbers_are_expected(tmp_path: Path) -> None:
    text = profile("[models.a.sampling]\ntemperature = 1\n")
    assert load_config(write(tmp_path, text, "a.gguf")).models["a"].sampling.temperature == 1.0


def test_n_gpu_layers_takes_a_number_auto_or_all(tmp_path: Path) -> None:
    for value, expected in (("99", 99), ('"auto"', "auto"), ('"all"', "all")):
        text = profile(f"placement.n_gpu_layers = {value}")
        config = load_config(write(tmp_path, text, "a.gguf"))
        assert config.models["a"].placement.n_gpu_layers == expected


# -- lookup order ------------------------------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A herd.toml in the cwd, one in the user config dir and one for $HERD_CONFIG."""
    paths = {}
    for name in ("cwd", "user", "env", "explicit"):
        directory = tmp_path / name
        directory.mkdir()
        paths[name] = directory / "herd.toml"
        paths[name].write_text(f'[models.{name}]\nfile = "{name}.gguf"\n')
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HERD_CONFIG_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("HERD_CONFIG", str(paths["env"]))
    return paths


def test_lookup_explicit_first(three_configs: dict[str, Path]) -> None:
    assert find_config_path(three_configs["explicit"]) == three_configs["explicit"]
    assert find_config_path(str(three_configs["explicit"])) == three_configs["explicit"]
    assert list(load_config(three_configs["explicit"], check_files=False).models) == ["explicit"]


def test_lookup_env_before_cwd(three_configs: dict[str, Path]) -> None:
    assert find_config_path() == three_configs["env"]


def test_lookup_cwd_before_user_dir(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HERD_CONFIG")
    assert find_config_path() == three_configs["cwd"]
    assert list(load_config(check_files=False).models) == ["cwd"]


def test_lookup_user_dir_last(
    three_configs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HERD_CONFIG")
    three_configs["cwd"].unlink()
    assert find_config_path() == three_configs["user"]


def test_lookup_relative_explicit_path_is_made_absolute(
    three_configs: dict[str, Path], tmp_path: Path
) -> None:
    assert find_config_path("../explicit/herd.toml") == tmp_path / "cwd/../explicit/herd.toml"


def test_explicit_or_env_path_that_does_not_exist_is_an_error(
    three_configs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config_path(tmp_path / "nope.toml")
    assert "nope.toml" in str(caught.value) and "--config" in str(caught.value)
    monkeypatch.setenv("HERD_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError) as caught:
        find_config_path()
    assert "gone.toml" in str(caught.value) and "HERD_CONFIG" in str(caught.value)


# -- 15 kinds of mistakes ------------------------------------------------------------


def test_01_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[models.a]\nfile = a.gguf\n")
    assert "invalid TOML" in error.message
    assert "line 2" in error.message and "column" in error.message
    assert "file = a.gguf" in error.hint and "quotes" in error.hint


def test_02_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    error = config_error(tmp_path, 'model_dir = "models"\n')
    assert error.key == "model_dir" and error.profile is None
    assert "unknown key 'model_dir'" in error.message
    assert "did you mean 'models_dir'?" in error.hint

    error = config_error(tmp_path, 'defualt_model = "a"\n')
    assert "did you mean 'default_model'?" in error.hint

    error = config_error(tmp_path, '[model.a]\nfile = "a.gguf"\n')
    assert "did you mean 'models'?" in error.hint


def test_02_server_key_at_top_level_points_to_server_table(tmp_path: Path) -> None:
    error = config_error(tmp_path, "port = 9000\n")
    assert "put it under [server]" in error.hint


def test_03_unknown_profile_key_suggests(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("[models.a.sampling]\ntemprature = 1.0"))
    assert (error.profile, error.key) == ("a", "sampling.temprature")
    assert "[models.a] sampling.temprature: unknown key 'temprature'" in str(error)
    assert error.hint == "did you mean 'temperature'?"


def test_03_sampling_key_at_profile_top_level(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("temperature = 1.0"))
    assert (error.profile, error.key) == ("a", "temperature")
    assert "put it under [models.a.sampling]" in error.hint

    error = config_error(tmp_path, profile("temprature = 1.0"))
    assert "did you mean 'temperature'? put it under [models.a.sampling]" in error.hint


def test_03_llama_cpp_flag_names_are_recognised(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("ngl = 99"))
    assert "did you mean 'n_gpu_layers'? put it under [models.a.placement]" in error.hint
    error = config_error(tmp_path, profile("ctx_size = 4096"))
    assert error.hint == "did you mean 'ctx'?"


def test_03_profile_key_inside_sampling(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("[models.a.sampling]\nctx = 4096"))
    assert "put it under [models.a]" in error.hint


def test_03_no_close_match_lists_known_keys(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("zzz = 1"))
    assert "known keys in [models.a]:" in error.hint and "file" in error.hint


def test_03_id_key_is_refused(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('id = "b"'))
    assert error.key == "id" and "table name" in error.hint


def test_04_wrong_type_ctx(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('ctx = "big"'))
    assert (error.profile, error.key) == ("a", "ctx")
    assert error.message == 'wrong type: expected an integer >= 0, got a string "big"'
    assert error.hint == "e.g. [models.a] ctx = 32768"


def test_04_wrong_type_tensor_split_string(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('[models.a.placement]\ntensor_split = "24,16"'))
    assert error.key == "placement.tensor_split"
    assert "expected a non-empty list of numbers >= 0" in error.message
    assert 'got a string "24,16"' in error.message
    assert error.hint == "e.g. [models.a.placement] tensor_split = [24, 16]"


def test_04_wrong_type_list_item(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('placement.tensor_split = [24, "x"]'))
    assert "expected a number >= 0" in error.message and "(item 2)" in error.message


def test_04_wrong_type_env_value_suggests_quotes(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile("env.CUDA_VISIBLE_DEVICES = 0"))
    assert error.key == "env.CUDA_VISIBLE_DEVICES"
    assert "expected a string, got an integer 0" in error.message
    assert error.hint == 'quote it: CUDA_VISIBLE_DEVICES = "0"'


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ("flash_attn = true", "flash_attn", "expected 'on', 'off' or 'auto', got a boolean"),
        ('placement.fit = "on"', "placement.fit", "expected true or false"),
        ('placement.n_gpu_layers = "most"', "placement.n_gpu_layers", "'auto' or 'all'"),
        ("sampling.top_k = 1.5", "sampling.top_k", "expected an integer >= 0, got a number"),
        ('args = "--foo"', "args", "expected a list of strings"),
        ("sampling = 1", "sampling", "expected a table"),
        ('aliases = "x"', "aliases", "expected a list of strings"),
        ("extends = 1", "extends", "expected a profile id"),
    ],
)
def test_04_wrong_types_name_the_expected_type(
    tmp_path: Path, body: str, key: str, expected: str
) -> None:
    error = config_error(tmp_path, profile(body))
    assert (error.profile, error.key) == ("a", key)
    assert "wrong type" in error.message and expected in error.message


def test_04_wrong_type_in_server_and_top_level(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[server]\nport = "8080"\n')
    assert (error.profile, error.key) == (None, "server.port")
    assert error.hint == "e.g. [server] port = 8080"
    error = config_error(tmp_path, "models_dir = 5\n")
    assert error.key == "models_dir" and "expected a non-empty string" in error.message
    error = config_error(tmp_path, "[models]\na = 1\n")
    assert error.key == "models.a" and "expected a table" in error.message


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (profile("ctx = -1"), "ctx", "invalid value -1: expected an integer >= 0"),
        (profile("parallel = 0"), "parallel", "expected an integer > 0"),
        (profile("sampling.temperature = -0.5"), "sampling.temperature", "a number >= 0"),
        (profile("sampling.top_p = 1.5"), "sampling.top_p", "a number between 0 and 1"),
        (profile("sampling.min_p = -0.1"), "sampling.min_p", "a number between 0 and 1"),
        (profile('flash_attn = "yes"'), "flash_attn", 'invalid value "yes"'),
        (profile("placement.tensor_split = []"), "placement.tensor_split", "non-empty list"),
        (profile("placement.n_gpu_layers = -3"), "placement.n_gpu_layers", "invalid value -3"),
        ("[server]\nport = 70000\n", "server.port", "an integer between 1 and 65535"),
        ("[server]\napi_port = 0\n", "server.api_port", "an integer between 1 and 65535"),
        ("[server]\nstart_timeout = 0\n", "server.start_timeout", "a number > 0"),
        ('[server]\napi_key = ""\n', "server.api_key", "a non-empty string"),
        ("[server]\nport = 8081\n", "server.api_port", "port and api_port are both 8081"),
    ],
)
def test_05_invalid_values(tmp_path: Path, text: str, key: str, expected: str) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key
    assert expected in error.message


def test_05_override_tensor_needs_pattern_equals_buffer(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('placement.override_tensor = ["exps,CPU"]'))
    assert error.key == "placement.override_tensor"
    assert "pattern=buffer" in error.message and "override_tensor = [" in error.hint


def test_06_a_missing_gguf_loads_and_only_its_profile_is_missing(tmp_path: Path) -> None:
    # Issue 14: one GGUF still downloading used to fail every herd command with exit 2.
    text = profile("").replace("a.gguf", "sub/b.gguf") + '[models.ok]\nfile = "a.gguf"\n'
    config = load_config(write(tmp_path, text, "a.gguf"))
    rows = {row.id: row.state for row in profiles.describe_all(config.models.values())}
    assert rows == {"a": "missing", "ok": "stopped"}
    assert missing_model_file(config, config.models["ok"]) is None
    error = missing_model_file(config, config.models["a"])
    assert error is not None and (error.profile, error.key) == ("a", "file")
    assert f"model file not found: {tmp_path / 'models' / 'sub' / 'b.gguf'}" in str(error)
    assert f"models_dir is {tmp_path / 'models'}; download the GGUF there" in str(error)


def test_06_a_gguf_that_appears_is_no_longer_missing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, profile("").replace("a.gguf", "late.gguf")))
    assert profiles.describe(config.models["a"]).state == "missing"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "late.gguf").write_bytes(b"GGUF")
    assert profiles.describe(config.models["a"]).state == "stopped"
    assert missing_model_file(config, config.models["a"]) is None


def test_06_a_running_model_shows_its_state_even_if_its_file_is_gone(tmp_path: Path) -> None:
    # llama-server holds the file it loaded; "ready" is what matters to a client.
    config = load_config(write(tmp_path, profile("").replace("a.gguf", "gone.gguf")))
    assert profiles.describe(config.models["a"], state="ready").state == "ready"
    assert profiles.describe(config.models["a"], state="failed").state == "missing"


def test_06_a_directory_as_gguf_still_fails_the_whole_file(tmp_path: Path) -> None:
    (tmp_path / "models" / "sub").mkdir(parents=True)
    error = config_error(tmp_path, profile("").replace("a.gguf", "sub"), check_files=True)
    assert (error.profile, error.key) == ("a", "file")
    assert "is a directory, not a GGUF file" in error.message
    assert f"models_dir is {tmp_path / 'models'}" in error.hint


def test_06_missing_files_are_not_checked_on_request(tmp_path: Path) -> None:
    text = profile("").replace("a.gguf", "sub/b.gguf")
    config = load_config(write(tmp_path, text), check_files=False)
    assert config.models["a"].file == tmp_path / "models" / "sub" / "b.gguf"


def test_06_a_directory_inherited_is_reported_at_the_parent(tmp_path: Path) -> None:
    (tmp_path / "models" / "dir").mkdir(parents=True)
    text = '[models.child]\nextends = "base"\n[models.base]\nfile = "dir"\n'
    error = config_error(tmp_path, text, check_files=True)
    assert error.profile == "base"


def test_07_missing_file_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[models.a]\nctx = 4096\n")
    assert (error.profile, error.key) == ("a", "file")
    assert "missing required key 'file'" in error.message
    assert 'file = "' in error.hint and str(tmp_path / "models") in error.hint


def test_08_duplicate_alias_between_profiles(tmp_path: Path) -> None:
    text = profile('aliases = ["x"]') + '[models.b]\nfile = "a.gguf"\naliases = ["x"]\n'
    error = config_error(tmp_path, text)
    assert (error.profile, error.key) == ("b", "aliases")
    assert "duplicate alias 'x': it is also an alias of profile 'a'" in error.message


def test_08_alias_equal_to_another_profile_id(tmp_path: Path) -> None:
    text = profile('aliases = ["b"]') + '[models.b]\nfile = "a.gguf"\n'
    error = config_error(tmp_path, text)
    assert (error.profile, error.key) == ("a", "aliases")
    assert "is the id of profile 'b'" in error.message


def test_08_alias_listed_twice_or_with_spaces(tmp_path: Path) -> None:
    assert "listed twice" in config_error(tmp_path, profile('aliases = ["x", "x"]')).message
    assert "invalid alias" in config_error(tmp_path, profile('aliases = ["my model"]')).message


def test_09_extends_cycle_shows_the_cycle(tmp_path: Path) -> None:
    text = '[models.a]\nfile = "a.gguf"\nextends = "b"\n[models.b]\nextends = "a"\n'
    error = config_error(tmp_path, text)
    assert (error.profile, error.key) == ("a", "extends")
    assert "extends cycle: a -> b -> a" in error.message

    error = config_error(tmp_path, profile('extends = "a"'))
    assert "extends cycle: a -> a" in error.message


def test_10_extends_unknown_profile(tmp_path: Path) -> None:
    text = profile('extends = "bse"') + '[models.base]\nfile = "a.gguf"\n'
    error = config_error(tmp_path, text)
    assert (error.profile, error.key) == ("a", "extends")
    assert "extends unknown profile 'bse'" in error.message
    assert "did you mean 'base'?" in error.hint


def test_11_invalid_profile_id(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[models."my model"]\nfile = "a.gguf"\n')
    assert "invalid profile id 'my model'" in error.message
    assert "[models.my-model]" in error.hint


def test_12_default_model_not_a_profile(tmp_path: Path) -> None:
    error = config_error(tmp_path, 'default_model = "b"\n[models.a]\nfile = "a.gguf"\n')
    assert error.key == "default_model"
    assert "default_model 'b' is not a profile" in error.message
    assert "known profiles: a" in error.hint


def test_13_non_loopback_host_needs_api_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[server]\nhost = "0.0.0.0"\n')
    assert error.key == "server.host"
    assert "no api_key" in error.message and "api_key =" in error.hint


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        ('["-m", "x.gguf"]', "`file`"),
        ('["--model", "x.gguf"]', "`file`"),
        ('["--host", "0.0.0.0"]', "[server] host"),
        ('["--port", "9000"]', "[server] port"),
        ('["-a", "x"]', "`aliases`"),
        ('["--alias", "x"]', "`aliases`"),
        ('["--api-key", "k"]', "[server] api_key"),
        ('["--no-slots"]', "/slots"),
        ('["-hf", "org/repo"]', "`file`"),
    ],
)
def test_14_args_with_flags_herd_sets(tmp_path: Path, args: str, advice: str) -> None:
    error = config_error(tmp_path, profile(f"args = {args}"))
    assert (error.profile, error.key) == ("a", "args")
    assert "is set by herd itself" in error.message
    assert advice in error.hint


def test_14_args_item_with_several_words(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('args = ["--reasoning-format none"]'))
    assert error.hint == 'give each word its own item: args = ["--reasoning-format", "none"]'


@pytest.mark.parametrize(
    ("text", "where", "bad"),
    [
        (
            profile('env.CUDA_VISIBLE_DEVICES = "0\\u0000"'),
            ("a", "env.CUDA_VISIBLE_DEVICES"),
            "NUL",
        ),
        (profile('env = { "GGML\\u0000X" = "1" }'), ("a", "env.'GGML\\x00X'"), "NUL"),
        (profile('env.GGML_X = """1\n2"""'), ("a", "env.GGML_X"), "line break"),
        (profile('env = { "A\\nB" = "1" }'), ("a", "env.'A\\nB'"), "line break"),
        (profile('args = ["--temp", "0.7\\n"]'), ("a", "args"), "line break"),
        (profile('args = ["--temp\\u0000"]'), ("a", "args"), "NUL"),
        (profile('aliases = ["x\\u0000"]'), ("a", "aliases"), "NUL"),
        (profile('rpc = ["host:1\\r"]'), ("a", "rpc"), "line break"),
        ('models_dir = "models\\n"\n', (None, "models_dir"), "line break"),
        ('llama_server = "/bin/x\\u0000"\n', (None, "llama_server"), "NUL"),
        ('[docker]\nimage = "img\\n"\n', (None, "docker.image"), "line break"),
        ('[docker]\nargs = ["--shm-size\\u0000"]\n', (None, "docker.args"), "NUL"),
        ('[claude]\nbinary = "claude\\n"\n', (None, "claude.binary"), "line break"),
        (profile('name = "x\\u0000"'), ("a", "name"), "NUL"),
    ],
)
def test_values_that_reach_an_argv_or_environment_have_no_nul_or_line_break(
    tmp_path: Path, text: str, where: tuple, bad: str
) -> None:
    # A NUL in env made the start die with "embedded null byte"; a line break in an argv
    # or environment value is never what the user meant.
    error = config_error(tmp_path, text)
    assert (error.profile, error.key) == where
    assert bad in error.message


def test_free_text_may_span_lines(tmp_path: Path) -> None:
    text = profile('name = """Two\nlines"""\nbench.system_prompt = """Be\nbrief."""')
    config = load_config(write(tmp_path, text, "a.gguf"), check_files=False)
    assert config.models["a"].bench.system_prompt == "Be\nbrief."


def test_15_no_config_file_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HERD_CONFIG", raising=False)
    monkeypatch.setenv("HERD_CONFIG_DIR", str(tmp_path / "user"))
    with pytest.raises(ConfigError) as caught:
        load_config()
    error = caught.value
    assert error.message == "no herd.toml found"
    assert "herd demo" in error.hint
    assert str(tmp_path / "user" / "herd.toml") in error.hint
    assert error.exit_code == 2


def test_errors_never_leak_pydantic_details(tmp_path: Path) -> None:
    error = config_error(tmp_path, profile('ctx = "big"\nthreads = "x"'))
    assert "validation error" not in str(error) and "pydantic" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_every_field_has_an_example_for_hints() -> None:
    from llamaherd.config import Placement, Sampling

    for model in (Profile, Sampling, Placement, ServerSettings):
        for name, info in model.model_fields.items():
            if name not in ("id", "sampling", "placement"):
                assert info.examples, f"{model.__name__}.{name} has no example"


def test_02_top_level_key_inside_a_table(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[server]\nmodels_dir = "models"\n')
    assert error.key == "server.models_dir"
    assert "top-level setting" in error.hint


def test_port_variables_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "herd.toml"
    path.write_text("[server]\nport = 9000\napi_port = 9001\n")
    monkeypatch.setenv("HERD_API_PORT", "9101")
    config = load_config(path)
    assert (config.server.port, config.server.api_port) == (9000, 9101)


def test_port_variable_that_is_not_a_port_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "herd.toml"
    path.write_text("")
    monkeypatch.setenv("HERD_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"\$HERD_PORT='eighty' is not a port number"):
        load_config(path)


def test_the_readme_example_is_a_valid_config(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, tmp_path / "herd.toml", check_files=False)
    assert config.default_model == "glm-flash-q4"
    assert config.resolve("coder").id == "qwen3-coder-ud-q5"
    q8 = config.models["glm-flash-q8"]
    assert q8.ctx == 131072 and q8.sampling.top_p == 0.95  # inherited through extends


def test_a_model_may_load_for_300_seconds_by_default(tmp_path: Path) -> None:
    # Issue 14: the original waited 300 s; big MoE models load in 2-5 minutes.
    config = load_config(write(tmp_path, profile("")))
    assert config.server.start_timeout == 300


@pytest.mark.parametrize(
    ("server", "api_port_variable"),
    [
        ("", None),
        ("[server]\napi_port = 9181\n", None),
        ("[server]\nport = 9180\napi_port = 9181\n", "9281"),
        ('[server]\nhost = "0.0.0.0"\napi_key = "k"\n', None),
        ('[server]\nhost = "::1"\napi_port = 9181\n', None),
        ('[server]\nhost = "localhost"\napi_key = "secret"\n', "9282"),
    ],
)
def test_the_daemon_address_read_alone_is_the_loaded_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str, api_port_variable: str | None
) -> None:
    # `herd status` and `herd switch` read [server] without the models (config/locate.py):
    # wherever the whole file would send a client, so must that.
    if api_port_variable:
        monkeypatch.setenv("HERD_API_PORT", api_port_variable)
    path = tmp_path / "herd.toml"
    path.write_text(server + '\n[models.x]\nfile = "x.gguf"\n')
    loaded = load_config(path).server
    assert daemon_address(path) == (loaded.api_url, loaded.api_key)


@pytest.mark.parametrize(
    "server",
    [
        '[server]\napi_port = "9181"\n',
        "[server]\napi_port = 0\n",
        '[server]\nhost = ""\n',
        "[server]\napi_key = 5\n",
        'server = "localhost"\n',
        "[server\n",
    ],
)
def test_a_daemon_address_that_is_not_plain_is_left_to_the_full_load(
    tmp_path: Path, server: str
) -> None:
    path = tmp_path / "herd.toml"
    path.write_text(server)
    assert daemon_address(path) is None
    with pytest.raises(ConfigError):
        load_config(path)

"""The llama-server command line for a profile. The ONE place it is built, so the daemon,
`herd plan`, the docker runtime and the tests all agree on it.

Flags follow llama.cpp's common/arg.cpp. Two deliberate choices:
- `--metrics` and `--slots` are always on: the dashboard and the samplers read them.
  (`--jinja` is llama.cpp's default now, so it is not added.)
- `profile.args` come last, so a user can override anything herd chose; the flags herd
  itself depends on (-m, --host, --port, --alias, ...) are refused by config/checks.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from llamaherd.config import Profile

ArgValue = bool | int | float | str | Sequence[int | float | str] | None


def server_argv(binary: Path, profile: Profile, *, host: str, port: int) -> list[str]:
    """argv to start llama-server for `profile`, listening on host:port."""
    sampling, placement = profile.sampling, profile.placement
    options: list[tuple[str, ArgValue]] = [
        ("-c", profile.ctx),
        ("-np", profile.parallel),
        ("-t", profile.threads),
        ("-fa", profile.flash_attn),
        ("-ctk", profile.cache_type_k),
        ("-ctv", profile.cache_type_v),
        ("--temp", sampling.temperature),
        ("--top-p", sampling.top_p),
        ("--top-k", sampling.top_k),
        ("--min-p", sampling.min_p),
        ("--repeat-penalty", sampling.repeat_penalty),
        ("--presence-penalty", sampling.presence_penalty),
        ("--frequency-penalty", sampling.frequency_penalty),
        ("--seed", sampling.seed),
        ("--fit", placement.fit),
        ("--fit-target", placement.fit_target),
        ("-ngl", placement.n_gpu_layers),  # an integer, "auto" or "all", as llama.cpp takes it
        ("--tensor-split", placement.tensor_split),
        ("--n-cpu-moe", placement.n_cpu_moe),
        ("--override-tensor", placement.override_tensor),
        ("--main-gpu", placement.main_gpu),
        ("--device", placement.devices),
        ("--rpc", profile.rpc),  # remote devices join the local ones (rpc.py)
    ]
    argv = [str(binary), "-m", str(profile.file), "--host", host, "--port", str(port)]
    argv += ["--alias", profile.id]
    for flag, value in options:
        if value is None or (isinstance(value, list | tuple) and not value):
            continue  # unset: llama-server's own default applies
        argv += [flag, format_value(value)]
    argv += ["--metrics", "--slots"]
    argv += profile.args
    return argv


def server_env(profile: Profile, base: Mapping[str, str]) -> dict[str, str]:
    """The environment for llama-server: `base` (usually os.environ), the profile's `gpus`
    as CUDA_VISIBLE_DEVICES, then profile.env on top (it wins)."""
    gpus = {"CUDA_VISIBLE_DEVICES": format_value(profile.gpus)} if profile.gpus else {}
    return {**base, **gpus, **profile.env}


def format_value(value: ArgValue) -> str:
    """One argv word: booleans as on/off, lists comma-joined, floats without noise."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        # 12 significant digits drop float artifacts (0.30000000000000004 -> 0.3) and
        # trailing zeros (24.0 -> 24) while keeping any precision a user could mean.
        return format(value, ".12g")
    if isinstance(value, list | tuple):
        return ",".join(format_value(item) for item in value)
    return str(value)

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
# Where llama-server writes and reads slot files: herd adds it for kept prompt caches
# (daemon/kvkeep.py), and the docker runtime mounts it.
SLOT_SAVE_FLAG = "--slot-save-path"


# Profile key (dotted inside a table) -> llama-server's spellings of its flag; argv uses
# the first, `herd import` reads them all. Order is the order on the command line.
FLAGS: dict[str, tuple[str, ...]] = {
    "ctx": ("-c", "--ctx-size"),
    "parallel": ("-np", "--parallel"),
    "threads": ("-t", "--threads"),
    "flash_attn": ("-fa", "--flash-attn"),
    "cache_type_k": ("-ctk", "--cache-type-k"),
    "cache_type_v": ("-ctv", "--cache-type-v"),
    "sampling.temperature": ("--temp",),
    "sampling.top_p": ("--top-p",),
    "sampling.top_k": ("--top-k",),
    "sampling.min_p": ("--min-p",),
    "sampling.repeat_penalty": ("--repeat-penalty",),
    "sampling.presence_penalty": ("--presence-penalty",),
    "sampling.frequency_penalty": ("--frequency-penalty",),
    "sampling.seed": ("--seed", "-s"),
    "placement.fit": ("--fit", "-fit"),
    "placement.fit_target": ("--fit-target", "-fitt"),
    # an integer, "auto" or "all", as llama.cpp takes it
    "placement.n_gpu_layers": ("-ngl", "--gpu-layers", "--n-gpu-layers"),
    "placement.tensor_split": ("--tensor-split", "-ts"),
    "placement.n_cpu_moe": ("--n-cpu-moe", "-ncmoe"),
    "placement.override_tensor": ("--override-tensor", "-ot"),
    "placement.main_gpu": ("--main-gpu", "-mg"),
    "placement.devices": ("--device", "-dev"),
    "rpc": ("--rpc",),  # remote devices join the local ones (rpc.py)
}


def server_argv(binary: Path, profile: Profile, *, host: str, port: int) -> list[str]:
    """argv to start llama-server for `profile`, listening on host:port."""
    argv = [str(binary), "-m", str(profile.file), "--host", host, "--port", str(port)]
    argv += ["--alias", profile.id]
    for key, spellings in FLAGS.items():
        value = _value(profile, key)
        if value is None or (isinstance(value, list | tuple) and not value):
            continue  # unset: llama-server's own default applies
        argv += [spellings[0], format_value(value)]
    argv += ["--metrics", "--slots"]
    argv += profile.args
    return argv


def _value(profile: Profile, key: str) -> ArgValue:
    table, _, name = key.rpartition(".")
    value: ArgValue = getattr(getattr(profile, table) if table else profile, name)
    return value


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

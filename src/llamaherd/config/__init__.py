"""herd.toml: the model profiles and server settings, loaded and checked in one place.

- schema.py: the pydantic models (`Profile`, `ServerSettings`, `Config` ...), the contract
  the rest of llamaherd codes against;
- locate.py: which herd.toml, and the daemon's address read from it without pydantic;
- load.py: read the file, merge `extends` chains, apply the port variables;
- checks.py: what pydantic cannot express (aliases, reserved `args`, files on disk,
  loopback without an API key);
- explain.py: a pydantic or TOML error as one ConfigError line (file, profile, key, hint);
- toml.py: values written as they appear in herd.toml.

`from llamaherd.config import X` is the way in. A name is imported from its module when
it is first asked for: `herd status` uses locate.py only, and pydantic with the config's
model classes would cost it most of its start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamaherd.lazy import attribute_loader

if TYPE_CHECKING:
    from llamaherd.config.load import load_config, parse_config
    from llamaherd.config.locate import CONFIG_NAME, PORT_VARIABLES, find_config_path
    from llamaherd.config.schema import (
        ID_PATTERN,
        BenchSettings,
        ClaudeRoute,
        ClaudeSettings,
        Config,
        DockerSettings,
        Placement,
        Profile,
        Sampling,
        ServerSettings,
    )
    from llamaherd.config.toml import toml_value

# Searched in this order: each module needs (most of) the ones before it, so finding a
# name imports nothing its own module would not.
_PARTS = ("locate", "schema", "load", "toml")

__all__ = [
    "BenchSettings",
    "CONFIG_NAME",
    "ClaudeRoute",
    "ClaudeSettings",
    "Config",
    "DockerSettings",
    "ID_PATTERN",
    "PORT_VARIABLES",
    "Placement",
    "Profile",
    "Sampling",
    "ServerSettings",
    "find_config_path",
    "load_config",
    "parse_config",
    "toml_value",
]


__getattr__ = attribute_loader(__name__, __all__, _PARTS)

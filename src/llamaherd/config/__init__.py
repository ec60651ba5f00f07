"""herd.toml: the model profiles and server settings, loaded and checked in one place.

- schema.py: the pydantic models (`Profile`, `ServerSettings`, `Config` ...), the contract
  the rest of llamaherd codes against;
- load.py: find the file, read it, merge `extends` chains, apply the port variables;
- checks.py: what pydantic cannot express (aliases, reserved `args`, files on disk,
  loopback without an API key);
- explain.py: a pydantic or TOML error as one ConfigError line (file, profile, key, hint);
- toml.py: values written as they appear in herd.toml.

`from llamaherd.config import X` is the way in; this module stays as light as its parts
(pydantic, no runtime), since every `herd` command imports it.
"""

from llamaherd.config.load import (
    CONFIG_NAME,
    PORT_VARIABLES,
    find_config_path,
    load_config,
    parse_config,
)
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

__all__ = [
    "CONFIG_NAME",
    "ID_PATTERN",
    "PORT_VARIABLES",
    "BenchSettings",
    "ClaudeRoute",
    "ClaudeSettings",
    "Config",
    "DockerSettings",
    "Placement",
    "Profile",
    "Sampling",
    "ServerSettings",
    "find_config_path",
    "load_config",
    "parse_config",
    "toml_value",
]

"""What the sandbox keeps from Claude Code: credentials in the environment and on disk.

The environment is filtered by pattern, not by a list of known names: a new service's
`FOO_API_KEY` is dropped without anyone adding it here. `[claude] pass_env` names the
variables to keep anyway. In strict mode the environment is an allowlist instead.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

SECRET_NAMES = (
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASSPHRASE*",
    "*_PWD",  # MYSQL_PWD; not PWD or OLDPWD
    "*_KEY",
    "*_KEY_*",  # AWS_ACCESS_KEY_ID
    "*APIKEY*",
    "*API_KEY*",
    "*PRIVATE_KEY*",
    "*_PAT",  # GITHUB_PAT
    "*CREDENTIAL*",
    "*_AUTH",
    "*COOKIE*",
    "*SESSION*",
    "*_DSN",  # SENTRY_DSN carries its key
    "*DATABASE_URL*",
    "*CONNECTION_STRING*",
    "*_CONN_STR*",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "KRB5CCNAME",
    "DOCKER_HOST",
    "KUBECONFIG",
)
"""Names (matched case-insensitively) of variables that carry, or point at, credentials."""

_SECRET_VALUE = re.compile(
    r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # a URL with user:password@
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,}|xox[abpr]-[\w-]{10,}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,})",
    re.IGNORECASE,
)
"""Values that are credentials whatever the name: URLs with a password, the token formats
of GitHub, GitLab, OpenAI/Anthropic, Slack, AWS and Hugging Face."""

STRICT_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "COLORTERM",
    "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "EDITOR",
    "VISUAL",
)
"""All the strict sandbox passes of the user's environment (besides pass_env)."""

HIDDEN_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".oci",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".config/glab-cli",
    ".config/git/credentials",
    ".config/rclone",
    ".config/op",
    ".config/sops",
    ".config/configstore",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".mozilla",
    ".cache/huggingface",
    ".huggingface",
    ".password-store",
    ".local/share/keyrings",
    ".terraform.d",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".gem/credentials",
    ".m2/settings.xml",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".my.cnf",
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".vault-token",
    ".Xauthority",
    # shell and REPL histories: commands typed with passwords and tokens in them
    ".bash_history",
    ".zsh_history",
    ".zhistory",
    ".histfile",
    ".sh_history",
    ".local/share/fish",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".rediscli_history",
    ".lesshst",
    ".viminfo",
    ".claude",  # the user's normal Claude Code: its login, history and settings
    ".claude.json",
)
"""Paths under $HOME replaced by an empty directory (or an unreadable file)."""

HIDDEN_SYSTEM = ("/run/docker.sock", "/var/run/docker.sock", "/run/podman/podman.sock")
"""Sockets that give root-equivalent power to whoever can connect."""


def _matches(name: str, patterns: Iterable[str]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in patterns)


def is_secret(name: str, value: str) -> bool:
    """Whether a variable looks like a credential, by its name or its value."""
    return _matches(name, SECRET_NAMES) or bool(_SECRET_VALUE.search(value))


def scrub(
    environ: Mapping[str, str], *, keep: Iterable[str] = (), strict: bool = False
) -> dict[str, str]:
    """The environment without credentials; `keep` (pass_env) names the ones to pass anyway.

    `strict`: only STRICT_ENV and `keep` pass, whatever the rest looks like.
    """
    kept = set(keep)
    if strict:
        return {k: v for k, v in environ.items() if k in kept or _matches(k, STRICT_ENV)}
    return {k: v for k, v in environ.items() if k in kept or not is_secret(k, v)}

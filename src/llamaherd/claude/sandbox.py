"""The bubblewrap (`bwrap`) command line that wraps Claude Code with `--sandbox`.

Inside: the whole filesystem read-only; read-write only the project directory, Claude
Code's config dir and a private /tmp; the usual credential stores in the home directory
(and agent sockets) replaced by empty ones; own pid, IPC and hostname namespaces. The
network is kept, so the local gateway stays reachable (and so is everything else on the
network: see docs/claude-code.md, Safety).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `sudo apt install bubblewrap`)"

HIDDEN_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config/gh",
    ".config/hub",
    ".config/gcloud",
    ".password-store",
    ".local/share/keyrings",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".vault-token",
    ".claude",  # the user's normal Claude Code: its login, history and settings
    ".claude.json",
)
"""Paths under $HOME replaced by an empty directory (or /dev/null for a file)."""

HIDDEN_SYSTEM = ("/run/docker.sock", "/var/run/docker.sock", "/run/podman/podman.sock")
"""Sockets that give root-equivalent power to whoever can connect."""

SECRET_ENV = (
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITLAB_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OPENAI_API_KEY",
    "NPM_TOKEN",
)
"""Environment variables that carry credentials; not passed into the sandbox."""

# One namespace per kind that costs nothing to Claude Code's work; not the network (the
# gateway must stay reachable) and not the user (bwrap adds one itself when unprivileged).
_BASE = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def unavailable_reason() -> str | None:
    """None when bwrap exists and can build a sandbox here; else why not, with a hint.

    Containers and some distributions forbid the namespaces bwrap needs; a probe run is
    the only reliable way to know.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bwrap not found; {INSTALL_HINT}"
    probe = [bwrap, *_BASE, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap cannot run: {error}"
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
        return f"bwrap cannot create a sandbox here: {detail}"
    return None


def wrap(
    command: list[str],
    *,
    project: Path,
    writable: Iterable[Path] = (),
    home: Path,
    runtime_dir: Path | None = None,
    bwrap: str = "bwrap",
) -> list[str]:
    """`command` run inside the sandbox, starting in `project`.

    `writable`: more directories Claude Code must write (its config dir). `runtime_dir`
    ($XDG_RUNTIME_DIR) holds agent and keyring sockets; it is replaced by an empty one.
    """
    rw = [project.absolute(), *(Path(p).absolute() for p in writable)]
    argv = [bwrap, *_BASE, "--die-with-parent"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in _program_dirs_in_tmp(command[0]):
        argv += ["--ro-bind", str(path), str(path)]
    for path in rw:
        argv += ["--bind", str(path), str(path)]
    hidden = [home / name for name in HIDDEN_IN_HOME] + [Path(p) for p in HIDDEN_SYSTEM]
    if runtime_dir:
        hidden.append(runtime_dir)
    for path in hidden:
        argv += _hide(path, rw)
    return [*argv, "--chdir", str(project.absolute()), "--", *command]


def _program_dirs_in_tmp(program: str) -> list[Path]:
    """The folders right under /tmp that hold the program (a checkout, a venv or an npm
    install there): the private /tmp would hide them and the program could not start.
    They come back read-only; the rest of /tmp stays private."""
    found = shutil.which(program)
    if found is None:
        return []
    tmp = Path("/tmp")
    dirs = []
    for path in (Path(found).absolute(), Path(found).resolve()):
        if tmp in path.parents:
            top = tmp / path.relative_to(tmp).parts[0]
            if top not in dirs:
                dirs.append(top)
    return dirs


def _hide(path: Path, writable: list[Path]) -> list[str]:
    """Mounts that replace `path` with an empty one; none when it does not exist, or when
    it is (or holds) a path the sandbox must write, e.g. a config dir set to ~/.claude."""
    if not path.exists() and not path.is_symlink():
        return []
    if any(w == path or path in w.parents for w in writable):
        return []
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def scrub(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without credentials (SECRET_ENV)."""
    return {k: v for k, v in environ.items() if k not in SECRET_ENV}

"""The bubblewrap (`bwrap`) command line that wraps an agent (`herd launch`, `herd claude`).

Inside: the whole filesystem read-only; read-write only the project directory, the
agent's config dir and a private /tmp; herd.toml and the user's herd config read-only
even inside the project, herd's state dir and the usual credential stores replaced by
empty ones (secrets.py); own pid, IPC, hostname and network namespaces, with the gateway
brought in through a relay (relay.py) and nothing else of the network. Strict mode
replaces the whole home directory by an empty one.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from llamaherd.agents import relay, secrets

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `sudo apt install bubblewrap`)"

# One namespace per kind that costs nothing to Claude Code's work, the network included
# (the gateway comes in through a relay); not the user (bwrap adds one itself when
# unprivileged).
_BASE = [
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--unshare-cgroup-try",
]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def unavailable_reason() -> str | None:
    """None when bwrap and socat exist and bwrap can build a sandbox here; else why not,
    with a hint.

    Containers and some distributions forbid the namespaces bwrap needs; a probe run is
    the only reliable way to know.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bwrap not found; {INSTALL_HINT}"
    if relay.socat_path() is None:
        return f"socat not found (it brings the gateway into the sandbox); {relay.INSTALL_HINT}"
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
    home: Path,
    writable: Iterable[Path] = (),
    read_only: Iterable[Path] = (),
    hidden: Iterable[Path] = (),
    runtime_dir: Path | None = None,
    strict: bool = False,
    gateway: relay.Relay | None = None,
    bwrap: str = "bwrap",
) -> list[str]:
    """`command` run inside the sandbox, starting in `project`.

    `writable`: more directories Claude Code must write (its config dir). `read_only`:
    paths it must not change even inside the project (herd.toml, git hooks). `hidden`:
    more paths replaced by empty ones (herd's state dir). `runtime_dir` ($XDG_RUNTIME_DIR)
    holds agent and keyring sockets; it is hidden too. `strict`: the home directory is an
    empty tmpfs with only the project, `writable` and the program's install in it.
    `gateway`: the relay that brings the gateway in; it must be started before the
    command runs (launch.run does it).
    """
    rw = [project.absolute(), *(Path(p).absolute() for p in writable)]
    argv = [bwrap, *_BASE, "--die-with-parent"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    visible = list(rw)
    if strict:
        argv += ["--tmpfs", str(home)]
        installed = _install_dirs(command[0], home)
        visible += installed
        for path in installed:
            argv += ["--ro-bind", str(path), str(path)]
    for path in _program_dirs_in_tmp(command[0]):
        argv += ["--ro-bind", str(path), str(path)]
    if gateway is not None:
        argv += ["--ro-bind", str(gateway.directory), str(gateway.directory)]
    for path in rw:
        argv += ["--bind", str(path), str(path)]
    for path in read_only:
        if path.exists() and _shown(path, home, visible, strict):
            argv += ["--ro-bind", str(path), str(path)]
    hide = [home / name for name in secrets.HIDDEN_IN_HOME] + [*hidden]
    hide += [Path(p) for p in secrets.HIDDEN_SYSTEM] + ([runtime_dir] if runtime_dir else [])
    for path in hide:
        if _shown(path, home, visible, strict):
            argv += _hide(path, rw)
    if gateway is not None:
        command = gateway.inside(command, relay.socat_path() or "socat")
    return [*argv, "--chdir", str(project.absolute()), "--", *command]


def _shown(path: Path, home: Path, visible: list[Path], strict: bool) -> bool:
    """Whether `path` can be seen inside at all: in strict mode, under home only what was
    bound into the empty home is."""
    if not strict or not (home == path or home in path.parents):
        return True
    return any(v == path or v in path.parents for v in visible)


def _install_dirs(program: str, home: Path) -> list[Path]:
    """What the strict home must show for `program` to start: the folders of its install
    under home (a whole node_modules tree for npm's package; the folder of a single
    binary or link), and those of the interpreter a script's #! names (node)."""
    found = shutil.which(program)
    if found is None:
        return []
    dirs: list[Path] = []
    paths = [Path(found).absolute(), Path(found).resolve()]
    interpreter = _interpreter(paths[1])
    if interpreter:
        # .../bin/node: its whole prefix (lib/ holds what it loads)
        paths += [interpreter.absolute().parent, interpreter.resolve().parent.parent]
    for path in paths:
        if home not in path.parents:
            continue
        parts = path.parts
        if "node_modules" in parts:
            # the folder that holds node_modules: the package's dependencies are beside it
            path = Path(*parts[: parts.index("node_modules")])
        elif path.is_file():
            path = path.parent
        if path != home and path not in dirs:
            dirs.append(path)
    return dirs


def _interpreter(script: Path) -> Path | None:
    """The program a script's #! line runs (through `env` too), when it is a script."""
    try:
        with script.open("rb") as handle:
            first = handle.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    name = words[1] if Path(words[0]).name == "env" and len(words) > 1 else words[0]
    found = shutil.which(name)
    return Path(found) if found else None


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
    it is a path the sandbox must write, e.g. a config dir set to ~/.claude. A writable
    path inside it (an agent's config dir in herd's state dir) is bound again on top."""
    if not path.exists() and not path.is_symlink():
        return []
    if path in writable:
        return []
    if not path.is_dir():
        return ["--ro-bind", "/dev/null", str(path)]
    inside = [w for w in writable if path in w.parents]
    mounts = ["--tmpfs", str(path)]
    for directory in inside:
        mounts += ["--bind", str(directory), str(directory)]
    return mounts

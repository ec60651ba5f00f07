"""`herd claude`: everything needed to run Claude Code on the local models, put together.

The CLI makes sure the daemon serves the model (control.up), then runs what `prepare`
returns: the `claude` command line (inside bubblewrap when sandboxed) and its environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaherd import control
from llamaherd.claude import env, home, sandbox
from llamaherd.config import Config
from llamaherd.errors import HerdError


@dataclass
class Launch:
    argv: list[str]
    environ: dict[str, str]
    """The whole environment Claude Code runs with."""
    herd_env: dict[str, str]
    """Only what herd sets (what --print-env prints)."""
    model: str
    sandboxed: bool
    note: str | None = None
    """Something the user should read first, e.g. why the sandbox is off."""


def choose_model(config: Config, requested: str | None) -> str:
    """The profile Claude Code starts on: the one asked for, [claude] main, the model the
    daemon runs now, default_model."""
    client = control.connect(config)
    running = None
    if not requested and not config.claude.main and client.alive():
        running = client.status().get("model")
    return env.main_model(config, requested, running)


def herd_environment(config: Config, model: str, *, routed: bool = False) -> dict[str, str]:
    """herd's variables for Claude Code, with its config dir seeded (so an editor that
    uses these exports finds the same settings)."""
    variables = env.claude_env(config, model, routed=routed)
    home.seed(Path(variables["CLAUDE_CONFIG_DIR"]))
    return variables


def prepare(
    config: Config,
    model: str,
    *,
    sandbox_mode: bool | None = None,
    routed: bool = False,
    args: Sequence[str] = (),
    project: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """The command line and environment that run Claude Code on `model`.

    `sandbox_mode`: True requires the sandbox (an error when bwrap cannot run), False
    turns it off, None uses it when it can run and says so when it cannot.
    """
    binary = env.find_claude(config)
    base = dict(os.environ if environ is None else environ)
    variables = herd_environment(config, model, routed=routed)
    full = env.full_environment(base, variables)
    argv = [str(binary), *args]
    use_sandbox, note = _sandbox_choice(sandbox_mode)
    if use_sandbox:
        home_dir = Path(base.get("HOME") or Path.home())
        runtime = base.get("XDG_RUNTIME_DIR")
        project = (project or Path.cwd()).absolute()
        if project in (home_dir.absolute(), Path("/")):
            note = f"the sandbox lets Claude Code write all of {project}; start it in a project"
        argv = sandbox.wrap(
            argv,
            project=project,
            writable=[Path(variables["CLAUDE_CONFIG_DIR"])],
            home=home_dir,
            runtime_dir=Path(runtime) if runtime else None,
            bwrap=sandbox.bwrap_path() or "bwrap",
        )
        full = sandbox.scrub(full)
    return Launch(argv, full, variables, model, use_sandbox, note)


def _sandbox_choice(mode: bool | None) -> tuple[bool, str | None]:
    """Whether to sandbox, and what to tell the user when the sandbox cannot run."""
    if mode is False:
        return False, None
    reason = sandbox.unavailable_reason()
    if reason is None:
        return True, None
    if mode:
        raise HerdError(f"--sandbox: {reason}")
    return False, f"running without a sandbox: {reason} (--no-sandbox silences this)"

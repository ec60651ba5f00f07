"""`herd claude`: everything needed to run Claude Code on the local models, put together.

The CLI makes sure the daemon serves the model (control.up), then runs what `prepare`
returns: the `claude` command line (inside bubblewrap when sandboxed) and its environment,
with `run`, which keeps the sandbox's gateway relay up while Claude Code runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaherd import control, paths
from llamaherd.claude import env, home, relay, sandbox, secrets
from llamaherd.config import Config
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError, UsageError


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
    gateway: relay.Relay | None = None
    """The relay that brings the gateway into the sandbox (run starts and stops it)."""


def choose_model(config: Config, requested: str | None) -> str:
    """The profile Claude Code starts on: the one asked for, [claude] main, the model the
    daemon runs now, default_model."""
    client = control.connect(config)
    running = None
    if not requested and not config.claude.main and client.alive():
        running = client.status().model
    return env.main_model(config, requested, running)


# Claude Code's first request (Claude Code 2.1.197, `claude -p`): its system prompt and 24
# tool schemas counted with real tokenizers are 20,911 tokens (SmolLM2's) and 20,152
# (Gemma 3's), 17-18k of them the tool schemas. A smaller context fails at once.
FIRST_REQUEST_TOKENS = 21_000


def context_warning(config: Config, model: str) -> str | None:
    """Why Claude Code's first request will not fit the profile's context, if it won't."""
    profile = config.resolve(model)
    if not profile.ctx:
        return None  # the model's trained context: unknown without reading the file
    per_slot = profile.ctx // (profile.parallel or 1)  # an unset parallel shares one cache
    if per_slot >= FIRST_REQUEST_TOKENS:
        return None
    return (
        f"{profile.id} has a context of {per_slot} tokens"
        + (" per slot" if (profile.parallel or 1) > 1 else "")
        + f", but Claude Code's first request alone is about {FIRST_REQUEST_TOKENS // 1000}k "
        f"tokens (its system prompt and tool schemas); set ctx = 32768 or more in "
        f"[models.{profile.id}]"
    )


def herd_environment(config: Config, model: str, *, routed: bool = False) -> dict[str, str]:
    """herd's variables for Claude Code, with its config dir seeded (so an editor that
    uses these exports finds the same settings)."""
    variables = env.claude_env(config, model, routed=routed)
    home.seed(Path(variables["CLAUDE_CONFIG_DIR"]))
    return variables


def sandbox_mode(config: Config, flag: bool | None, strict: bool) -> str:
    """The sandbox to use: --no-sandbox, --strict, --sandbox, then [claude] sandbox."""
    if strict and flag is False:
        raise UsageError("--strict and --no-sandbox contradict each other; pick one")
    if flag is False:
        return "off"
    if strict:
        return "strict"
    configured = config.claude.sandbox
    return "on" if flag and configured in ("auto", "off") else configured


def prepare(
    config: Config,
    model: str,
    *,
    mode: str = "auto",
    routed: bool = False,
    args: Sequence[str] = (),
    project: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """The command line and environment that run Claude Code on `model`.

    `mode` (sandbox_mode): "on" and "strict" require the sandbox (an error when it cannot
    run), "off" turns it off, "auto" uses it when it can run and says so when it cannot.
    """
    binary = env.find_claude(config)
    base = dict(os.environ if environ is None else environ)
    variables = herd_environment(config, model, routed=routed)
    argv = [str(binary), *args]
    check_own_sandbox(Path(variables["CLAUDE_CONFIG_DIR"]))
    use_sandbox, note = _sandbox_choice(mode)
    if not use_sandbox:
        full = env.full_environment(base, variables)
        return Launch(argv, full, variables, model, sandboxed=False, note=note)
    gateway = relay.Relay.for_gateway(variables["ANTHROPIC_BASE_URL"])
    variables["ANTHROPIC_BASE_URL"] = gateway.inside_url
    strict = mode == "strict"
    clean = secrets.scrub(base, keep=config.claude.pass_env, strict=strict)
    home_dir = Path(base.get("HOME") or Path.home())
    runtime = base.get("XDG_RUNTIME_DIR")
    project = (project or Path.cwd()).absolute()
    if project in (home_dir.absolute(), Path("/")):
        note = f"the sandbox lets Claude Code write all of {project}; start it in a project"
    argv = sandbox.wrap(
        argv,
        project=project,
        home=home_dir,
        writable=[Path(variables["CLAUDE_CONFIG_DIR"])],
        read_only=read_only_paths(config, project),
        hidden=[paths.state_dir()],
        runtime_dir=Path(runtime) if runtime else None,
        strict=strict,
        gateway=gateway,
        bwrap=sandbox.bwrap_path() or "bwrap",
    )
    full = env.full_environment(clean, variables)
    return Launch(argv, full, variables, model, sandboxed=True, note=note, gateway=gateway)


PROTECTED_IN_PROJECT = (".git/hooks", ".git/config", ".envrc", ".vscode", ".idea")
"""What runs code outside the sandbox later: git hooks and the config that names commands
(core.fsmonitor, core.hooksPath, aliases), direnv's .envrc, the editors' tasks."""


def read_only_paths(config: Config, project: Path) -> list[Path]:
    """What the sandbox must not change even inside the writable project: the daemon's
    herd.toml (the daemon reloads it by itself and starts what it names), this one, the
    user config dir, the llama-server herd runs, and PROTECTED_IN_PROJECT."""
    running = (running_record() or {}).get("config")
    found = [config.path, Path(running) if running else None, paths.config_dir()]
    found += [config.llama_server, *(project / name for name in PROTECTED_IN_PROJECT)]
    return [p.absolute() for p in found if p is not None]


def run(plan: Launch) -> int:
    """Run the plan to its end and return its exit status (128+N when signal N ended it).

    Without a sandbox herd simply becomes Claude Code (exec). With one, herd stays to keep
    the gateway relay up, leaves Ctrl-C to Claude Code and passes SIGTERM and SIGHUP on.
    """
    if plan.gateway is None:
        os.execvpe(plan.argv[0], plan.argv, plan.environ)
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    outside = None
    try:
        outside = plan.gateway.start(relay.socat_path() or "socat")
        child = subprocess.Popen(plan.argv, env=plan.environ)
        # A Python handler, not SIG_IGN: exec resets it, so the child keeps the default.
        signal.signal(signal.SIGINT, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda number, _frame: child.send_signal(number))
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        plan.gateway.close(outside)
    return 128 - code if code < 0 else code


def check_own_sandbox(config_dir: Path) -> None:
    """Claude Code's own bash sandbox (on in the seeded settings.json) needs bubblewrap
    and socat on Linux; without them it cannot wrap bash commands, and says so only
    inside the session. Refuse up front with both ways out."""
    if not sys.platform.startswith("linux") or not home.own_sandbox_enabled(config_dir):
        return
    tools = {relay.INSTALL_HINT: relay.socat_path(), sandbox.INSTALL_HINT: sandbox.bwrap_path()}
    missing = [hint for hint, found in tools.items() if found is None]
    if missing:
        settings = config_dir / "settings.json"
        raise HerdError(
            f'Claude Code\'s own bash sandbox is on ("sandbox": {{"enabled": true}} in '
            f"{settings}) and needs socat and bubblewrap: {'; '.join(missing)}; or set "
            f'"enabled": false there to run bash commands without it'
        )


def _sandbox_choice(mode: str) -> tuple[bool, str | None]:
    """Whether to sandbox, and what to tell the user when the sandbox cannot run."""
    if mode == "off":
        return False, None
    reason = sandbox.unavailable_reason()
    if reason is None:
        return True, None
    if mode != "auto":
        raise HerdError(f"sandbox {mode!r} ([claude] sandbox, --sandbox, --strict): {reason}")
    return False, f"running without a sandbox: {reason} (--no-sandbox silences this)"

"""`herd launch AGENT` (and `herd claude`): everything needed to run a coding agent on
the local models, the same way for every agent in agents/table.py.

The CLI makes sure the daemon serves the model (control.up), then runs what `prepare`
returns: the agent's command line (inside bubblewrap when sandboxed) and its environment,
with `run`, which keeps the sandbox's gateway relay up while the agent runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaherd import control, paths
from llamaherd.agents import relay, sandbox, secrets
from llamaherd.agents.base import Agent, Setup, full_environment, gateway_url, pick_model
from llamaherd.config import Config
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError, UsageError


@dataclass
class Launch:
    argv: list[str]
    environ: dict[str, str]
    """The whole environment the agent runs with."""
    herd_env: dict[str, str]
    """Only what herd sets (what --print-env prints)."""
    model: str
    sandboxed: bool
    note: str | None = None
    """Something the user should read first, e.g. why the sandbox is off."""
    gateway: relay.Relay | None = None
    """The relay that brings the gateway into the sandbox (run starts and stops it)."""


def choose_model(agent: Agent, config: Config, requested: str | None) -> str:
    """The profile the agent starts on: the one asked for, the one herd.toml names for
    it ([claude] main), the model the daemon runs now, default_model."""
    preferred = agent.preferred(config) if agent.preferred else None
    running = None
    if not (requested or preferred):
        client = control.connect(config)
        running = client.status().model if client.alive() else None
    return pick_model(config, requested, preferred, running)


def context_warning(agent: Agent, config: Config, model: str) -> str | None:
    """Why the agent's first request will not fit the profile's context, if it won't."""
    if agent.first_request_tokens is None:
        return None
    profile = config.resolve(model)
    if not profile.ctx:
        return None  # the model's trained context: unknown without reading the file
    per_slot = profile.ctx // (profile.parallel or 1)  # an unset parallel shares one cache
    if per_slot >= agent.first_request_tokens:
        return None
    return (
        f"{profile.id} has a context of {per_slot} tokens"
        + (" per slot" if (profile.parallel or 1) > 1 else "")
        + f", but {agent.title}'s first request alone is about "
        f"{agent.first_request_tokens // 1000}k tokens (its system prompt and tool schemas); "
        f"set ctx = 32768 or more in [models.{profile.id}]"
    )


def setup(
    agent: Agent, config: Config, model: str, *, routed: bool = False, url: str | None = None
) -> Setup:
    """What the agent is configured from; `url`: the gateway as it reaches it."""
    return Setup(config, model, url or gateway_url(config), agent.config_dir(config), routed)


def configure(agent: Agent, plan: Setup) -> dict[str, str]:
    """herd's variables for the agent, with its config dir written (so an editor or a
    shell that uses these exports finds the same settings)."""
    if agent.seed is not None:
        agent.seed(plan.directory)
    else:
        write_files(plan.directory, agent.files(plan))
    return agent.environment(plan)


def herd_environment(
    agent: Agent, config: Config, model: str, *, routed: bool = False
) -> dict[str, str]:
    """herd's variables for the agent outside a sandbox (what --print-env prints)."""
    return configure(agent, setup(agent, config, model, routed=routed))


def write_files(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """herd's config files for an agent, in its private config dir, replaced whole (a
    reader never sees half a file)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.herd-partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        partial.replace(path)
        written.append(path)
    return written


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
    agent: Agent,
    config: Config,
    model: str,
    *,
    mode: str = "auto",
    routed: bool = False,
    args: Sequence[str] = (),
    project: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Launch:
    """The command line and environment that run `agent` on `model`.

    `mode` (sandbox_mode): "on" and "strict" require the sandbox (an error when it cannot
    run), "off" turns it off, "auto" uses it when it can run and says so when it cannot.
    """
    binary = agent.executable(config)
    base = dict(os.environ if environ is None else environ)
    argv = [str(binary), *args]
    use_sandbox, note = _sandbox_choice(mode)
    gateway = relay.Relay.for_gateway(gateway_url(config)) if use_sandbox else None
    inside = gateway.inside_url if gateway else None
    plan = setup(agent, config, model, routed=routed, url=inside)
    variables = configure(agent, plan)
    if agent.check is not None:
        agent.check(plan.directory)
    if gateway is None:
        full = full_environment(agent, base, variables)
        return Launch(argv, full, variables, model, sandboxed=False, note=note)
    strict = mode == "strict"
    clean = secrets.scrub(base, keep=config.claude.pass_env, strict=strict)
    home_dir = Path(base.get("HOME") or Path.home())
    runtime = base.get("XDG_RUNTIME_DIR")
    project = (project or Path.cwd()).absolute()
    if project in (home_dir.absolute(), Path("/")):
        note = f"the sandbox lets {agent.title} write all of {project}; start it in a project"
    argv = sandbox.wrap(
        argv,
        project=project,
        home=home_dir,
        writable=[plan.directory],
        read_only=read_only_paths(config, project),
        hidden=[paths.state_dir()],
        runtime_dir=Path(runtime) if runtime else None,
        strict=strict,
        gateway=gateway,
        bwrap=sandbox.bwrap_path() or "bwrap",
    )
    full = full_environment(agent, clean, variables)
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

    Without a sandbox herd simply becomes the agent (exec). With one, herd stays to keep
    the gateway relay up, leaves Ctrl-C to the agent and passes SIGTERM and SIGHUP on.
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

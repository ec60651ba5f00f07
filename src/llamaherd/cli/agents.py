"""`herd launch AGENT` and `herd claude`: a coding agent against the local models."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from llamaherd import control
from llamaherd.cli.options import config_of
from llamaherd.cli.render import err_console, print_lines, switch_failure
from llamaherd.schema import SwitchFailed

if TYPE_CHECKING:
    from llamaherd.agents.base import Agent


class _PassThroughCommand(click.Command):
    """Everything after `--` goes to the wrapped program untouched, so an optional
    argument (ID) is never mistaken for one of its words."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            ctx.meta["passthrough"] = args[split + 1 :]
            args = args[:split]
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            # click types `message` Final, yet sets it per instance: adding a hint is fine.
            error.message += f" The agent's own options go after `--`, e.g. {self.example}"  # type: ignore[misc]
            raise

    example = "herd launch opencode -- run hi"


class _ClaudeCommand(_PassThroughCommand):
    example = "herd claude -- -p hi"


def _agent_options(function: Callable[..., None]) -> Callable[..., None]:
    """The options every agent takes."""
    options = [
        click.option(
            "--sandbox/--no-sandbox",
            default=None,
            help="Run it in bubblewrap (default: [claude] sandbox, else when it can run).",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Sandbox with an empty home directory ([claude] sandbox).",
        ),
        click.option("--route", is_flag=True, help="Let the gateway pick the model per request."),
        click.option(
            "--print-env", is_flag=True, help="Print the exports (for an editor, a shell)."
        ),
        click.option(
            "--print-config", is_flag=True, help="Print the config files herd writes for it."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("launch", cls=_PassThroughCommand)
@click.argument("agent")
@click.argument("model", required=False)
@_agent_options
@click.pass_context
def launch_command(ctx: click.Context, agent: str, model: str | None, **options: Any) -> None:
    """Run a coding agent on the local models: herd launch AGENT [ID] [-- AGENT ARGS].

    AGENT: claude, opencode, codex, crush, qwen or aider. Starts the daemon and ID
    (default: the model running now) if needed, writes the agent's own config dir with
    the profiles as its models, and runs it against the gateway, sandboxed when
    bubblewrap can run. See docs/clients.md.
    """
    from llamaherd.agents.table import agent as find_agent  # only this command needs it

    _launch(ctx, find_agent(agent), model, **options)


@click.command("claude", cls=_ClaudeCommand)
@click.argument("model", required=False)
@_agent_options
@click.pass_context
def claude_command(ctx: click.Context, model: str | None, **options: Any) -> None:
    """Run Claude Code on the local models: herd claude [ID] [-- CLAUDE ARGS].

    The same as `herd launch claude`. Starts the daemon and ID (default: the model
    running now) if needed, seeds its own config dir (~/.claude-local), and runs `claude`
    against the gateway, where `/model <profile>` switches models. See docs/claude-code.md.
    """
    from llamaherd.agents.claude.agent import CLAUDE  # only this command needs it

    _launch(ctx, CLAUDE, model, **options)


def _launch(
    ctx: click.Context,
    agent: Agent,
    model: str | None,
    *,
    sandbox: bool | None,
    strict: bool,
    route: bool,
    print_env: bool,
    print_config: bool,
) -> None:
    from llamaherd.agents import base, launch

    config = config_of(ctx)
    chosen = launch.choose_model(agent, config, model)
    if warning := launch.context_warning(agent, config, chosen):
        err_console.print(f"herd: warning: {warning}")
    if print_env or print_config:
        setup = launch.setup(agent, config, chosen, routed=route)
        variables = launch.configure(agent, setup)
        if print_env:
            click.echo(base.exports(agent, variables))
        for name, text in agent.files(setup).items() if print_config else ():
            click.echo(f"# {setup.directory / name}\n{text.rstrip()}")
        return
    plan = launch.prepare(
        agent,
        config,
        chosen,
        mode=launch.sandbox_mode(config, sandbox, strict),
        routed=route,
        args=ctx.meta.get("passthrough", []),
    )
    answer = control.up(config, chosen)
    if isinstance(answer, SwitchFailed):
        print_lines(switch_failure(answer), stderr=True)
        sys.exit(1)
    if plan.note:
        err_console.print(f"herd: {plan.note}")
    sys.stdout.flush()
    sys.exit(launch.run(plan))

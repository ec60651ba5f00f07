"""`herd claude`: Claude Code against the local models."""

from __future__ import annotations

import sys

import click

from llamaherd import control
from llamaherd.cli.options import config_of
from llamaherd.cli.render import err_console, print_lines, switch_failure
from llamaherd.schema import SwitchFailed


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
            error.message += " Claude Code's own options go after `--`, e.g. herd claude -- -p hi"  # type: ignore[misc]
            raise


@click.command("claude", cls=_PassThroughCommand)
@click.argument("model", required=False)
@click.option(
    "--sandbox/--no-sandbox",
    default=None,
    help="Run Claude Code in bubblewrap (default: [claude] sandbox, else when it can run).",
)
@click.option(
    "--strict", is_flag=True, help="Sandbox with an empty home directory ([claude] sandbox)."
)
@click.option("--route", is_flag=True, help="Let the gateway pick the model per request.")
@click.option("--print-env", is_flag=True, help="Print the exports (for VS Code, a shell).")
@click.pass_context
def claude_command(
    ctx: click.Context,
    model: str | None,
    sandbox: bool | None,
    strict: bool,
    route: bool,
    print_env: bool,
) -> None:
    """Run Claude Code on the local models: herd claude [ID] [-- CLAUDE ARGS].

    Starts the daemon and ID (default: the model running now) if needed, seeds its own
    config dir (~/.claude-local), and runs `claude` against the gateway, where
    `/model <profile>` switches models. See docs/claude-code.md.
    """
    from llamaherd.claude import env, launch  # only this command needs them

    config = config_of(ctx)
    chosen = launch.choose_model(config, model)
    if warning := launch.context_warning(config, chosen):
        err_console.print(f"herd: warning: {warning}")
    if print_env:
        click.echo(env.exports(launch.herd_environment(config, chosen, routed=route)))
        return
    plan = launch.prepare(
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

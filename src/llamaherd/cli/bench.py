"""`herd bench`: speed, HumanEval+ quality, and the report from the stored results."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from llamaherd.cli.options import config_of, emit_json, optional_config
from llamaherd.cli.progress import BuildProgress
from llamaherd.cli.render import console, err_console, error_line
from llamaherd.errors import HerdError, UsageError

if TYPE_CHECKING:
    from llamaherd.bench.target import Target
    from llamaherd.config import Config
    from llamaherd.store import Run


@click.group()
def bench() -> None:
    """Measure speed and HumanEval+ quality; every result is kept (state dir, SQLite)
    and `herd bench report` turns them into REPORT.md with charts."""


def _endpoint_options(command: Callable[..., None]) -> Callable[..., None]:
    """--endpoint URL --model NAME --api-key-env VAR, shared by the bench commands."""
    command = click.option(
        "--api-key-env", metavar="VAR", help="Environment variable holding the endpoint's key."
    )(command)
    command = click.option(
        "--model", "endpoint_model", help="Model name for --endpoint (or --via claude-code)."
    )(command)
    command = click.option(
        "--endpoint",
        metavar="URL",
        help="Benchmark an OpenAI-compatible endpoint (its API root, e.g. https://host/v1).",
    )(command)
    return command


def _bench_targets(
    ctx: click.Context,
    ids: tuple[str, ...],
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    key_env: str | None,
    *,
    local: bool = False,
) -> tuple[Config | None, list[Any]]:
    """The targets to benchmark (profiles, then the endpoint) and the config, if used."""
    from llamaherd.bench.target import endpoint_target, herd_targets

    if endpoint_model and not endpoint:
        raise UsageError("--model names the model of an --endpoint; profiles are given as IDs")
    targets = []
    config = None
    if endpoint:
        targets.append(endpoint_target(endpoint, endpoint_model, key_env))
    if ids or every or local or not endpoint:
        config = config_of(ctx)
        if local and not every:  # with --all, every profile is asked for anyway
            if ids:
                raise UsageError("give profile ids or --local, not both")
            ids = _local_ids(config)
        if every or local:  # asked for all of them: skip what is still downloading, say so
            if ids and every:
                raise UsageError("give profile ids or ask for every profile (--all), not both")
            ids, every = _with_files(config, ids or tuple(config.models)), False
        targets = herd_targets(config, ids, every) + targets
    return config, targets


def _with_files(config: Config, ids: tuple[str, ...]) -> tuple[str, ...]:
    """The profiles whose GGUF is on disk; each other one is named on stderr."""
    from llamaherd.config.checks import missing_model_file

    present = []
    for profile_id in ids:
        if missing := missing_model_file(config, config.models[profile_id]):
            err_console.print(f"herd: skipping {profile_id}: {missing}")
        else:
            present.append(profile_id)
    if not present:
        raise UsageError("no profile to benchmark: every model file is missing")
    return tuple(present)


def _local_ids(config: Config) -> tuple[str, ...]:
    """--local as the original setup meant it: the `bench-*` profiles (those written for
    benchmarking) when there are any, else every profile."""
    bench = tuple(pid for pid in config.models if pid.startswith("bench-"))
    return bench or tuple(config.models)


def _list_option(text: str, name: str, *, allow_ctx: bool = False) -> tuple[int, ...]:
    values = []
    for item in text.split(","):
        item = item.strip()
        if allow_ctx and item == "ctx":
            values.append(0)
        elif item.isdigit() and int(item) > 0:
            values.append(int(item))
        else:
            extra = " or 'ctx'" if allow_ctx else ""
            raise UsageError(f"{name} {text!r}: expected positive integers{extra}, comma-separated")
    return tuple(values)


def _run_each(targets: list[Any], work: Callable[[Any], Any]) -> tuple[list[Any], list[str]]:
    """Run `work(target)` for every target; one failure is reported and the rest go on."""
    done, failures = [], []
    for target in targets:
        try:
            done.append(work(target))
        except HerdError as error:
            if isinstance(error, UsageError):
                raise
            failures.append(f"{target.model}: {error}")
            err_console.print(error_line(f"{target.model}: {error}"))
    return done, failures


@bench.command("speed")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every profile in herd.toml.")
@_endpoint_options
@click.option(
    "--prompt-lengths",
    default="512,4096,ctx",
    show_default=True,
    help="Prompt sizes in tokens for prompt processing; ctx: near the context size.",
)
@click.option(
    "--gen-tokens",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Tokens each generation request produces.",
)
@click.option(
    "--reps", type=click.IntRange(1), default=3, show_default=True, help="Repetitions of each step."
)
@click.option("--concurrency", default="1,2,4,8", show_default=True, help="Parallel streams.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bench_speed(
    ctx: click.Context,
    ids: tuple[str, ...],
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str | None,
    prompt_lengths: str,
    gen_tokens: int,
    reps: int,
    concurrency: str,
    as_json: bool,
) -> None:
    """Measure prompt processing, generation, TTFT and a concurrency sweep for the
    profiles IDS (or --all, or the running one), switching to each in turn."""
    from llamaherd.bench import report, speed
    from llamaherd.bench.target import prepare, restoring
    from llamaherd.store import Store

    settings = speed.SpeedSettings(
        prompt_lengths=_list_option(prompt_lengths, "--prompt-lengths", allow_ctx=True),
        gen_tokens=gen_tokens,
        reps=reps,
        concurrency=_list_option(concurrency, "--concurrency"),
    )
    config, targets = _bench_targets(ctx, ids, every, endpoint, endpoint_model, api_key_env)
    store = Store()
    with restoring(config), BuildProgress(enabled=not as_json, labels={}) as progress:

        def one(target: Target) -> Run:
            total, done = settings.steps(), 0

            def advance() -> None:
                nonlocal done
                done += 1
                progress(f"speed {target.model}", done, total)

            def environment() -> dict:
                return prepare(config, target)

            return speed.run(target, settings, store, environment=environment, advance=advance)

        runs, failures = _run_each(targets, one)
    if as_json:
        emit_json([run.to_json() for run in runs])
    else:
        click.echo(report.speed_table(runs).markdown())
        click.echo(report.concurrency_table(runs).markdown())
    if failures:
        sys.exit(1)


@bench.command("humaneval")
@click.argument("ids", nargs=-1)
@click.option(
    "--local", "local", is_flag=True, help="The bench-* profiles; without any, every profile."
)
@click.option("--all", "every", is_flag=True, help="Every profile, and --endpoint if given.")
@_endpoint_options
@click.option(
    "--via",
    type=click.Choice(["claude-code"]),
    help="Also ask Claude Code's model --model (e.g. opus) through `claude -p`, no tools.",
)
@click.option("--mini", is_flag=True, help="HumanEval+ Mini: the same tasks, fewer plus tests.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N tasks (a smoke test).")
@click.option("--task", "tasks", multiple=True, help="Only this task (e.g. HumanEval/0); repeat.")
@click.option(
    "--parallel",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Requests and test processes at once (at most the CPU cores).",
)
@click.option(
    "--max-tokens", type=click.IntRange(1), help="Tokens per answer, instead of bench.max_tokens."
)
@click.option(
    "--mode",
    type=click.Choice(["chat", "completion"]),
    help="chat: EvalPlus's instruction through the chat template; completion: the task's "
    "prompt raw to /v1/completions, as EvalPlus asks base models. Default: completion "
    "for a GGUF without a chat template, chat otherwise.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def bench_humaneval(
    ctx: click.Context,
    ids: tuple[str, ...],
    local: bool,
    every: bool,
    endpoint: str | None,
    endpoint_model: str | None,
    api_key_env: str | None,
    via: str | None,
    mini: bool,
    limit: int | None,
    tasks: tuple[str, ...],
    parallel: int,
    max_tokens: int | None,
    mode: str | None,
    as_json: bool,
) -> None:
    """Score the profiles IDS (or --local, or the running one) on EvalPlus HumanEval+:
    greedy codegen through the gateway with each profile's [models.ID.bench] settings,
    then the base and plus tests. An interrupted run resumes when started again.
    `--via claude-code --model opus` scores Claude Code's model too (alone, or after IDS)."""
    from llamaherd.bench import humaneval, report
    from llamaherd.bench.target import prepare, restoring
    from llamaherd.store import Store

    cores = os.cpu_count() or 1
    if parallel > cores:
        raise UsageError(f"--parallel {parallel}: at most {cores} (the CPU cores here)")
    settings = humaneval.HumanEvalSettings(
        mini=mini, tasks=tasks, limit=limit, parallel=parallel, max_tokens=max_tokens, mode=mode
    )
    claude_model = None
    if via:
        if endpoint:
            raise UsageError("--via claude-code and --endpoint: give one of them")
        if not endpoint_model:
            raise UsageError("--via claude-code needs --model NAME: Claude Code's model, e.g. opus")
        claude_model, endpoint_model = endpoint_model, None
    config: Config | None = None
    targets: list[Target] = []
    if not via or ids or every or local:
        config, targets = _bench_targets(
            ctx, ids, every, endpoint, endpoint_model, api_key_env, local=local
        )
    if claude_model:
        config = config or optional_config(ctx)
        targets.append(_claude_code_target(config, claude_model))
    data = humaneval.data_file(config.humaneval_data if config else None, mini)
    dataset = humaneval.load_dataset(data, mini)
    store = Store()
    phases = {"generate": "generating", "evaluate": "testing"}
    with restoring(config), BuildProgress(enabled=not as_json, labels={}) as progress:

        def one(target: Target) -> Run:
            def report_progress(phase: str, done: int, total: int) -> None:
                progress(f"{phases[phase]} {target.model}", done, total)

            return humaneval.run(
                target,
                dataset,
                settings,
                store,
                environment=lambda: prepare(config, target),
                progress=report_progress,
            )

        runs, failures = _run_each(targets, one)
    if as_json:
        emit_json([run.to_json() for run in runs])
    else:
        click.echo(report.quality_table(runs).markdown())
        click.echo(report.versus_table(runs).markdown())
    if failures:
        sys.exit(1)


def _claude_code_target(config: Config | None, model: str) -> Target:
    """Claude Code's `model`, with `claude` found as `herd claude` finds it."""
    from llamaherd.agents.claude.env import find_claude
    from llamaherd.bench import claude_code

    try:
        binary = find_claude(config)
    except HerdError as error:  # nothing to run: the command line asked for the impossible
        raise UsageError(f"--via claude-code: {error}") from None
    return claude_code.target(model, binary, os.environ)


@bench.command("report")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-report"),
    show_default=True,
    help="Folder for REPORT.md and charts/.",
)
@click.option("--html", "html_page", is_flag=True, help="Also a self-contained report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def bench_report(out: Path, html_page: bool, as_json: bool) -> None:
    """Write REPORT.md (quality, vs published, speed, concurrency, history) and PNG charts
    from the stored results."""
    from llamaherd.bench import report
    from llamaherd.store import Store

    written = report.write(Store(), out, html_page=html_page)
    if as_json:
        emit_json(written)
        return
    console.print(f"wrote {written['report']}")
    for path in written["charts"].values():
        console.print(f"      {path}")
    if "html" in written:
        console.print(f"      {written['html']}")

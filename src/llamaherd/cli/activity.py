"""`herd activity`: the gateway's requests from the daemon's activity log."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from llamaherd.cli.options import daemon_client, emit_json

if TYPE_CHECKING:
    from llamaherd.schema import ActivityRecord

FOLLOW_POLL_S = 0.5
HEADER = (
    f"{'time':<8} {'client':<15} {'status':>6} {'model':<20} {'endpoint':<24} "
    f"{'prompt':>7} {'cached':>7} {'gen':>6} {'wait':>6} {'ttft':>6} {'pp t/s':>8} "
    f"{'tg t/s':>7} {'total':>7}"
)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing requests as they come.")
@click.option("--model", help="Only requests that named or were served by this model.")
@click.option("--status", help="Only this status: a code (200), a class (4xx) or 'error'.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="Records."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with -f: a line each).")
@click.option("--csv", "export", flag_value="csv", help="Print CSV.")
@click.option("--markdown", "export", flag_value="markdown", help="Print a markdown table.")
@click.pass_context
def activity(
    ctx: click.Context,
    follow: bool,
    model: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
    export: str | None,
) -> None:
    """Show the gateway's requests: model, status, tokens, waits and speeds."""
    from llamaherd.schema import activity as shapes

    client = daemon_client(ctx)
    page = client.activity(model=model, status=status, limit=limit)
    records = page.records[::-1]  # oldest first, as a log reads
    if as_json and not follow:
        emit_json(page)
        return
    if export:
        write = shapes.to_csv if export == "csv" else shapes.to_markdown
        click.echo(write(records), nl=False)
        return
    if not as_json:
        click.echo(HEADER)
    show(records, as_json)
    last = max((r.id for r in page.records), default=0)
    while follow:
        time.sleep(FOLLOW_POLL_S)
        news = client.activity(model=model, status=status, after=last, limit=1000).records
        show(news, as_json)
        last = max((r.id for r in news), default=last)


def show(records: list[ActivityRecord], as_json: bool) -> None:
    for record in records:
        click.echo(json.dumps(record.model_dump()) if as_json else line(record))


def line(record: ActivityRecord) -> str:
    served = record.model or "-"
    if record.requested and record.requested != record.model:
        served = f"{record.requested}->{served}"
    status = str(record.status) if record.status is not None else "-"
    if record.cancelled:
        status += "x"
    return (
        f"{datetime.fromtimestamp(record.at):%H:%M:%S} {record.client or '-':<15} "
        f"{status:>6} {served[:20]:<20} {record.endpoint[:24]:<24} "
        f"{_n(record.prompt_tokens):>7} {_n(record.cached_tokens):>7} "
        f"{_n(record.generated_tokens):>6} {_s(record.wait_s):>6} {_s(record.ttft_s):>6} "
        f"{_n(record.prompt_tps):>8} {_n(record.generation_tps):>7} {_s(record.duration_s):>7}"
    )


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, int) else f"{value:.1f}"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"

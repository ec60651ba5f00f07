"""`herd cache list|clear`: the prompt caches saved in the state dir (docs/kv-keep.md).
They are files the daemon reads afresh at each start, so no daemon is needed here."""

from __future__ import annotations

import json
import time

import click

from llamaherd import paths
from llamaherd.cli.render import ago, console
from llamaherd.daemon import kvstore


@click.group()
def cache() -> None:
    """List or clear the prompt caches saved when models were swapped out (docs/kv-keep.md).

    Each is restored when its model starts again, unless its model file, llama-server or
    cache flags changed."""


@cache.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Each saved cache: profile, slot, tokens, size, age (most recently used first)."""
    root = kvstore.kv_dir(paths.state_dir())
    entries = kvstore.entries(root)
    now = time.time()
    if as_json:
        rows = [
            {
                "model": e.profile,
                "slot": e.slot,
                "tokens": e.tokens,
                "bytes": e.bytes,
                "age_s": round(now - e.saved_at, 1),
                "file": str(e.bin_path(root)),
            }
            for e in entries
        ]
        console.print_json(json.dumps(rows))
        return
    if not entries:
        console.print(f"no saved prompt caches in {root}")
        return
    for e in entries:
        size = f"{e.bytes / 2**20:.1f} MiB"
        console.print(
            f"{e.profile:<24} slot {e.slot:<3} {e.tokens:>7} tokens"
            f"  {size:>10}  {ago(now - e.saved_at)} ago"
        )
    total = sum(e.bytes for e in entries) / 2**20
    console.print(f"{len(entries)} saved, {total:.1f} MiB in {root}")


@cache.command("clear")
@click.argument("model", required=False)
def clear_command(model: str | None) -> None:
    """Remove the saved caches (only MODEL's when given)."""
    removed = kvstore.clear(kvstore.kv_dir(paths.state_dir()), model)
    freed = sum(entry.bytes for entry in removed) / 2**20
    console.print(f"removed {len(removed)} saved prompt caches ({freed:.1f} MiB)")

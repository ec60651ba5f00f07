"""Moving in from another setup: `herd import`."""

from __future__ import annotations

from pathlib import Path

import click

from llamaherd.cli.options import emit_json
from llamaherd.cli.render import console, err_console


@click.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--compose",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The original setup's docker-compose.yml: its llama-server defaults go to [defaults].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="herd.toml to write (default: the one herd uses; created when there is none).",
)
@click.option("--dry-run", is_flag=True, help="Print the resulting herd.toml; write nothing.")
@click.option("--force", is_flag=True, help="Replace profiles (and defaults) that exist.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def import_command(
    ctx: click.Context,
    source: Path,
    compose: Path | None,
    config_path: Path | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write profiles from a models.conf, a llama-swap config.yaml or a llama.cpp preset INI."""
    from llamaherd import fsutil, migrate
    from llamaherd.config.load import editable_config

    imported = migrate.read(source, compose=compose)
    path, text = editable_config(config_path or ctx.obj.get("config"))
    merged = migrate.merge(imported, text, path, force=force)
    if not dry_run:
        fsutil.write_text_if_changed(path, merged.text)
    if as_json:
        emit_json(
            {
                "config": str(path),
                "written": not dry_run,
                "added": merged.added,
                "replaced": merged.replaced,
                "kept": merged.kept,
                "not_imported": imported.notes,
                "text": merged.text if dry_run else None,
            }
        )
        return
    if dry_run:
        click.echo(merged.text, nl=False)
    verb = "would write" if dry_run else "wrote"
    console.print(
        f"{verb} {path}: {len(merged.added)} added, {len(merged.replaced)} replaced",
        markup=False,
    )
    if merged.kept:
        err_console.print(
            f"kept as they are (pass --force to replace): {', '.join(merged.kept)}", markup=False
        )
    if imported.notes:
        err_console.print(f"not imported as keys ({len(imported.notes)}):", markup=False)
        for note in imported.notes:
            err_console.print(f"  {note}", markup=False, soft_wrap=True)

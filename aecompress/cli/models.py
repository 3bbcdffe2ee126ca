"""``aecompress models``: the models decode can find by id, and adding one to the user's directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import store
from .app import CliError, main


@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """The models aecompress finds by id (decode, info and eval need no -m for them).

    \b
    aecompress models                  list them (same as `models list`)
    aecompress models add my.safetensors   add a trained model to your model directory

    A .aec file names its model by id.  Without -m, decode looks for it in your
    model directory (AECOMPRESS_MODELS, else the platform's data directory, e.g.
    ~/.local/share/aecompress/models), then among the models shipped with
    aecompress: the current default and every earlier release's default.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_models)


def _row(entry: store.Entry) -> dict:
    try:
        meta = store.read_metadata(entry.path)
        preset = meta.get("preset") or {}
    except (OSError, ValueError):
        preset = {}
    return {
        "model_id": entry.model_id,
        "preset": preset.get("name"),
        "qualities": len(preset.get("lambdas") or []) or None,
        "bytes": entry.size,
        "release": entry.release,
        "default": entry.model_id == store.default_id() and entry.where == "shipped",
        "where": entry.where,
        "path": str(entry.path),
    }


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, one model a line.")
def list_models(as_json: bool = False) -> None:
    """List every model found without -m: your own first, then the shipped ones."""
    rows = [_row(e) for e in store.entries()]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"your model directory: {store.user_dir()}" + ("" if store.user_dir().is_dir() else " (none yet)"))
    for row in rows:
        shipped = f"aecompress {row['release']}" + (", the default" if row["default"] else "") if row["release"] else "not in a release"
        q = f"q1–{row['qualities']}" if row["qualities"] else "q?"
        click.echo(f"  {row['model_id']}  {row['preset'] or '?':<10} {q:<7} {row['bytes'] / 1e6:5.1f} MB  {row['where']:<8} {shipped}")
        click.echo(f"      {row['path']}")


@models.command()
@click.argument("model", metavar="MODEL")
@click.option("-f", "--force", is_flag=True, help="Replace a copy already in your model directory.")
def add(model: str, force: bool) -> None:
    """Copy a model file into your model directory, named by its id, so files encoded with it decode without -m."""
    from ..modelfile import ModelFileError, load_model
    from .io import not_a_model_reason

    try:
        loaded = load_model(model)
    except ModelFileError as exc:
        raise CliError(not_a_model_reason(model, str(exc))) from None
    try:
        target = store.install(Path(model), loaded.model_id, force)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"model {loaded.model_id} added: {target}", err=True)

"""The `macrohard` command: the typer app, wired to the commands of each module."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version as installed_version
from typing import Annotated, Any

import typer

from macrohard.cli import audit, export, images, replay, runs, serve
from macrohard.cli.batch import batch_app
from macrohard.cli.eval import eval_app
from macrohard.cli.common import HELP_OPTIONS
from macrohard.cli.helptext import Command
from macrohard.cli.sandbox import sandbox_app

app = typer.Typer(
    help="A software company of AI role agents: spec in, audited git repository out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help is plain text: markup would eat "[model]" from a help string.
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(eval_app, name="eval")
app.add_typer(batch_app, name="batch")


def _show_version(asked: bool) -> None:
    if asked:
        try:
            number = installed_version("macrohard")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        typer.echo(f"macrohard {number}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """A software company of AI role agents: spec in, audited git repository out."""


def _command(function: Callable[..., Any], name: str | None = None) -> None:
    app.command(name, cls=Command)(function)


_command(runs.run)
_command(runs.demo)
_command(runs.resume)
_command(runs.approve_run, "approve")
_command(runs.reject_run, "reject")
_command(runs.runs)
_command(replay.replay)
_command(audit.audit)
_command(audit.blame)
_command(audit.trace)
_command(images.images)
_command(serve.serve)
_command(export.export)

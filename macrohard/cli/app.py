"""The `macrohard` command: the typer app, wired to the commands of each module."""

from __future__ import annotations

import typer

from macrohard.cli import audit, runs, serve
from macrohard.cli.sandbox import sandbox_app

app = typer.Typer(
    help="A software company of AI role agents: spec in, audited git repository out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(sandbox_app, name="sandbox")

app.command()(runs.run)
app.command()(runs.demo)
app.command()(runs.resume)
app.command("approve")(runs.approve_run)
app.command("reject")(runs.reject_run)
app.command()(runs.runs)
app.command()(audit.audit)
app.command()(audit.blame)
app.command()(audit.trace)
app.command()(serve.serve)

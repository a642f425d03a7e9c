"""`macrohard sandbox ...`: build the sandbox image, clean up after crashes, check the hardening."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from macrohard.cli.common import HELP_OPTIONS, ConfigOpt, ExitCode, console, settings_for, user_errors
from macrohard.cli.helptext import Command
from macrohard.cli.show import label, plain

sandbox_app = typer.Typer(
    help="Build and clean up the Docker sandbox.", no_args_is_help=True, rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)


@sandbox_app.command("build", cls=Command)
@user_errors
def sandbox_build(
    tag: Annotated[str | None, typer.Option("--tag", metavar="TAG", help="Image tag (default: sandbox.image).")] = None,
    stack: Annotated[
        str | None, typer.Option("--stack", metavar="STACK", help="Build a stack's image on it too: python or node.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Build the sandbox image (offline from Debian's packages when no registry answers)."""
    from macrohard.sandbox.docker import docker_client
    from macrohard.sandbox.image import build_image, build_stack_image
    from macrohard.stacks import stack_named

    settings = settings_for(config)
    image = tag or settings.sandbox.image
    progress = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
    client = docker_client()
    image_id = build_image(client, image, on_progress=progress)
    console.print(plain(f"built {image} ({image_id[:19]})"))
    if stack is not None and (chosen := stack_named(stack)).packages:
        image_id = build_stack_image(client, chosen, image, on_progress=progress)
        console.print(plain(f"built {chosen.image} ({image_id[:19]})"))


@sandbox_app.command("prune", cls=Command)
@user_errors
def sandbox_prune(
    config: ConfigOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Also remove the sandboxes of runs in progress.")] = False,
) -> None:
    """Remove the sandbox containers that crashed runs left behind (with --all, every one)."""
    from macrohard.sandbox.docker import DockerSandboxProvider, docker_client

    provider = DockerSandboxProvider(settings_for(config).sandbox, docker_client(), cleanup_on_exit=False)
    removed = provider.prune() if all_ else provider.prune_orphans()
    console.print(f"removed {removed} container{'s' if removed != 1 else ''}")


@sandbox_app.command("doctor", cls=Command)
@user_errors
def sandbox_doctor(config: ConfigOpt = None) -> None:
    """Check the engine, the image, and that every hardening option takes effect in a sandbox."""
    from macrohard.sandbox.doctor import run_doctor

    settings = settings_for(config)
    report = run_doctor(settings.sandbox)
    table = Table(title="Sandbox doctor", title_justify="left", header_style="bold")
    for col in ("check", "expected", "found", ""):
        table.add_column(col)
    for c in report.checks:
        # What the engine or a container said may hold brackets ("[Errno 2]"): text, never markup.
        table.add_row(plain(c.name), plain(c.expected), plain(c.found),
                      Text("ok", style="green") if c.ok else Text("FAIL", style="bold red"))
    console.print(table)
    for weakness in report.weakened:
        console.print(label("weakened:", "yellow", weakness), highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))

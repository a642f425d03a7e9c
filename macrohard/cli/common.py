"""What every command shares: the consoles, the shared options, expected errors, finding a run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from macrohard.cli.show import label, plain
from macrohard.config import Settings, load_settings
from macrohard.errors import ConfigError, MacrohardError

console = Console()
errors = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings file (default: ./macrohard.toml).")]
WorkspacesOpt = Annotated[Path | None, typer.Option("--workspaces", help="Folder that holds the run folders.")]
ParallelOpt = Annotated[int | None, typer.Option("--max-parallel", min=1, help="Tickets worked on at once.")]
AttemptsOpt = Annotated[int | None, typer.Option("--max-attempts", min=1, help="Engineer attempts per ticket.")]
RunArg = Annotated[str, typer.Argument(help="Run id, `latest`, or a run folder.")]


def user_errors(command: F) -> F:
    """Expected failures become one line and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MacrohardError as e:
            # Messages quote models, repositories and settings ("[model] model"): text, never markup.
            line = label("error:", "bold red", e.message)
            if e.hint:
                line.append_text(Text.assemble(" ", plain(f"({e.hint})", style="dim")))
            errors.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def settings_for(config: Path | None, **flags: Any) -> Settings:
    return load_settings(config, overrides=flags)


def resolve_run_dir(run: str, workspaces: Path) -> Path:
    """A run id, `latest`, or the path of a run folder."""
    if run == "latest":
        runs = sorted(p for p in workspaces.glob("*/transcript.jsonl")) if workspaces.is_dir() else []
        if not runs:
            raise ConfigError(f"there are no runs in {workspaces}", "start one with `macrohard run SPEC` or `macrohard demo`")
        return runs[-1].parent
    for candidate in (Path(run), workspaces / run):
        if (candidate / "transcript.jsonl").is_file():
            return candidate
    raise ConfigError(f"no run {run!r} in {workspaces}", "give a run id from that folder, `latest`, or a run folder's path")

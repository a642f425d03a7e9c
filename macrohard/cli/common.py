"""What every command shares: the consoles, the shared options, expected errors, finding a run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import IntEnum
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
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class ExitCode(IntEnum):
    """What a command's exit status means; the README lists them."""

    DONE = 0  # the run is done, or the command did what it was asked
    FAILED = 1  # the run failed, or an error stopped the command (one line says which)
    USAGE = 2  # the command line itself: an unknown option, a missing or bad value
    PARTIAL = 3  # the run ended with some tickets failed or blocked
    PAUSED = 4  # the run paused: a budget was reached or the user asked (Ctrl-C once)
    AWAITING_APPROVAL = 5  # the run waits at a gate: `macrohard approve` or `reject`
    INTERRUPTED = 130  # stopped at once (a second Ctrl-C, SIGTERM); resumable


RUN_EXIT = {
    "done": ExitCode.DONE, "partial": ExitCode.PARTIAL, "failed": ExitCode.FAILED,
    "paused": ExitCode.PAUSED, "awaiting_approval": ExitCode.AWAITING_APPROVAL,
}


class UsageMistake(MacrohardError):
    """The command line asks for something that cannot be: exit 2, like typer's own usage errors."""


def at_least(minimum: float) -> Callable[[Any], Any]:
    """An option callback refusing values below minimum, in words rather than as a range in the help."""

    def check(value: float | None) -> float | None:
        if value is not None and value < minimum:
            shown = int(minimum) if float(minimum).is_integer() else minimum
            raise typer.BadParameter(f"must be {shown} or more, not {value}")
        return value

    return check


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", metavar="FILE", help="Settings file (default: ./macrohard.toml).")
]
WorkspacesOpt = Annotated[
    Path | None, typer.Option("--workspaces", metavar="DIR", help="Folder that holds the run folders (default: ./workspaces).")
]
ParallelOpt = Annotated[
    int | None, typer.Option("--max-parallel", metavar="N", callback=at_least(1), help="Tickets worked on at once (1 or more).")
]
AttemptsOpt = Annotated[
    int | None, typer.Option("--max-attempts", metavar="N", callback=at_least(1), help="Engineer attempts per ticket (1 or more).")
]
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id, `latest`, or a run folder.", show_default=False)]


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
            raise typer.Exit(int(ExitCode.USAGE if isinstance(e, UsageMistake) else ExitCode.FAILED)) from None
        except KeyboardInterrupt:
            errors.print("interrupted", style="yellow", markup=False, highlight=False)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper  # type: ignore[return-value]


def settings_for(config: Path | None, **flags: Any) -> Settings:
    return load_settings(config, overrides=flags)


def resolve_run_dir(run: str, workspaces: Path, storage_url: str | None = None) -> Path:
    """A run id, `latest`, or the path of a run folder; with `[storage] url`, also a run the database knows."""
    if run == "latest":
        runs = sorted(p for p in workspaces.glob("*/transcript.jsonl")) if workspaces.is_dir() else []
        if not runs:
            raise ConfigError(f"there are no runs in {workspaces}", "start one with `macrohard run SPEC` or `macrohard demo`")
        return runs[-1].parent
    for candidate in (Path(run), workspaces / run):
        if (candidate / "transcript.jsonl").is_file():
            return candidate
    if storage_url is not None and run != "latest":
        from macrohard.company.storage import find_run

        found = find_run(run, storage_url)
        if found is not None:
            if not (found / "transcript.jsonl").is_file():
                raise ConfigError(f"run {run}'s folder {found} is not on this machine",
                                  "put the workspaces folder on storage every machine mounts at the same path")
            return found
    raise ConfigError(f"no run {run!r} in {workspaces}", "give a run id from that folder, `latest`, or a run folder's path")

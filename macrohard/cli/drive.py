"""Driving a company run from a terminal: the sandbox, live progress, Ctrl-C, approval prompts."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import click
import typer
from rich.text import Text

from macrohard.cli.common import console, errors
from macrohard.cli.progress import ProgressView
from macrohard.cli.show import approval_panel, label, print_summary
from macrohard.config import SandboxSettings, Settings
from macrohard.errors import SandboxError


def sandbox_provider(settings: Settings) -> Any:
    from macrohard.sandbox.docker import DockerSandboxProvider, SandboxWeakenedWarning, docker_client
    from macrohard.sandbox.image import build_image, image_exists

    for weaker in settings.sandbox.weakened():
        errors.print(label("warning:", "bold yellow", f"sandbox weakened: {weaker}"), highlight=False, soft_wrap=True)
    warnings.filterwarnings("ignore", category=SandboxWeakenedWarning)  # said once, above

    client = docker_client()
    if not image_exists(client, settings.sandbox.image):
        if settings.sandbox.image != SandboxSettings().image:
            raise SandboxError(f"sandbox image {settings.sandbox.image} does not exist", "build or load it, or unset sandbox.image")
        console.print(f"The sandbox image {settings.sandbox.image} is missing; building it (about a minute, once).")
        build_image(client, settings.sandbox.image, on_progress=lambda line: console.print(f"  {line}", highlight=False, markup=False))
    return DockerSandboxProvider(settings.sandbox, client)


def model_factory(script: Path | None) -> Any:
    if script is not None:
        return None
    from macrohard.llm.openai import OpenAIChatModel

    return OpenAIChatModel


class CtrlC:
    """The first Ctrl-C finishes the current step and pauses; a second stops at once.

    SIGTERM (a `kill`, a shutdown) stops at once too, leaving the run paused and resumable.
    """

    def __init__(self) -> None:
        self.control: Any = None
        self.pressed = False

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._previous_term = signal.signal(signal.SIGTERM, self._stop)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
        signal.signal(signal.SIGTERM, self._previous_term)

    def _stop(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pressed or self.control is None:
            raise KeyboardInterrupt
        self.pressed = True
        self.control.request_pause("paused by the user (Ctrl-C)")
        errors.print("[yellow]Pausing after the current step; press Ctrl-C again to stop at once.[/]")


def ask(view: ProgressView, payload: dict[str, Any]) -> Any:
    from macrohard.models import ApprovalDecision

    with view.paused():
        console.print(approval_panel(payload, f"Approve the {payload['gate']}?"))
        answer = typer.prompt("approve or reject", type=click.Choice(["approve", "reject"]), default="approve")
        comment = typer.prompt("why (goes back as feedback)") if answer == "reject" else ""
    return ApprovalDecision(decision=answer, comment=comment)


def drive(run: Any, *, banner: Text, decision: Any = None) -> None:
    provider = sandbox_provider(run.settings)
    console.print(banner, highlight=False)
    interactive = console.is_terminal and sys.stdin.isatty()
    with ProgressView(console) as view, CtrlC() as ctrl_c:
        try:
            summary = run.execute(
                provider, on_event=view.on_event, decision=decision,
                decide=(lambda payload: ask(view, payload)) if interactive else None,
                control_hook=lambda control: setattr(ctrl_c, "control", control),
            )
        except KeyboardInterrupt:
            view.__exit__(None, None, None)
            errors.print(f"[yellow]stopped;[/] resume with: macrohard resume {run.run_id}", highlight=False)
            # Worker threads may be inside a step; the run is checkpointed, so do not wait for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
    print_summary(console, summary)
    if summary.status == "failed":
        raise typer.Exit(1)

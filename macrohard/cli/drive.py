"""Driving a company run from a terminal: the sandbox, live progress, Ctrl-C, approval prompts."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from macrohard.cli.common import RUN_EXIT, ExitCode, console, errors
from macrohard.cli.progress import ProgressView
from macrohard.cli.show import approval_panel, label, plain, print_summary
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
        console.print(plain(f"The sandbox image {settings.sandbox.image} is missing; building it (about a minute, once)."))
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
        errors.print("Pausing after the current step; press Ctrl-C again to stop at once.", style="yellow", markup=False)


APPROVE = ("approve", "a", "yes", "y")
REJECT = ("reject", "r", "no", "n")


@contextmanager
def _ctrl_c_raises() -> Iterator[None]:
    """While a person is asked something, Ctrl-C stops the question instead of pausing the run."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _choose() -> str:
    while True:
        answer = console.input(Text("approve or reject? [approve] ", style="bold")).strip().lower()
        if answer in ("", *APPROVE):
            return "approve"
        if answer in REJECT:
            return "reject"
        errors.print(plain("answer approve or reject (a or r); Enter approves; Ctrl-D leaves the run waiting"),
                     style="yellow", highlight=False)


def _comment() -> str:
    while True:
        comment = console.input(Text("what should change? (goes back to the role as feedback) ", style="bold")).strip()
        if comment:
            return comment
        errors.print(plain("a rejection needs a comment: say what to change"), style="yellow", highlight=False)


def ask(view: ProgressView, payload: dict[str, Any]) -> Any:
    """The person's decision at a gate, or None to leave the run waiting there (Ctrl-D or Ctrl-C)."""
    from macrohard.models import ApprovalDecision

    with view.paused(), _ctrl_c_raises():
        console.print(approval_panel(payload, f"Approve the {payload['gate']}?"))
        try:
            answer = _choose()
            comment = _comment() if answer == "reject" else ""
        except (EOFError, KeyboardInterrupt):
            console.print()
            return None
    return ApprovalDecision(decision=answer, comment=comment)  # type: ignore[arg-type]


class _Output:
    """Progress for the run's listeners; a closed output pauses the run instead of failing it.

    When the terminal or pipe goes (`macrohard demo | head`), Rich raises SystemExit(1)
    from the print; raised inside a node, that would fail the run with the reason "1".
    """

    def __init__(self, view: ProgressView, ctrl_c: CtrlC) -> None:
        self.view = view
        self.ctrl_c = ctrl_c
        self.closed = False

    def __call__(self, event: Any) -> None:
        if self.closed:
            return
        try:
            self.view.on_event(event)
        except (BrokenPipeError, SystemExit):
            self.closed = True
            if self.ctrl_c.control is not None:
                self.ctrl_c.control.request_pause("nothing reads the output any more (its terminal or pipe closed)")


def drive(run: Any, *, banner: Text, decision: Any = None, recorded: Callable[[dict[str, Any]], Any] | None = None) -> None:
    """Run (or go on with) a company run in this terminal; exit with the code for how it stopped.

    `recorded` answers a gate first, when it can (a replay's recorded decisions); a person then.
    """
    run.check_resumable(decision)  # before anything is printed or started
    provider = sandbox_provider(run.settings)
    console.print(banner, highlight=False)
    interactive = console.is_terminal and sys.stdin.isatty()
    with ProgressView(console) as view, CtrlC() as ctrl_c:

        def decide(payload: dict[str, Any]) -> Any:
            answer = recorded(payload) if recorded is not None else None
            return answer if answer is not None or not interactive else ask(view, payload)

        try:
            summary = run.execute(
                provider, on_event=_Output(view, ctrl_c), decision=decision,
                decide=decide if interactive or recorded is not None else None,
                control_hook=lambda control: setattr(ctrl_c, "control", control),
            )
        except KeyboardInterrupt:
            view.__exit__(None, None, None)
            errors.print(plain(f"stopped; resume with: macrohard resume {run.run_id}", style="yellow"), highlight=False)
            # Worker threads may be inside a step; the run is checkpointed, so do not wait for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
    print_summary(console, summary)
    code = RUN_EXIT.get(summary.status, ExitCode.FAILED)
    if code != ExitCode.DONE:
        raise typer.Exit(int(code))

"""What `macrohard eval` and `macrohard batch` share: where the runs go, Ctrl-C, and driving an EvalRun to its report.

Both fan many runs out over an executor (threads here, or tasks on a Ray cluster) and keep
the report in WORKSPACES/evals/ID/eval.json; an eval scores its cases, a batch does not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from macrohard.cli import drive as driving
from macrohard.cli.common import HELP_OPTIONS, ExitCode, UsageMistake, console, errors
from macrohard.cli.evalview import EvalProgress, print_report
from macrohard.cli.show import plain
from macrohard.config import Settings

RUN, RESUME = "run", "resume"


class RunFirst(TyperGroup):
    """`macrohard eval SUITE ...` is `macrohard eval run SUITE ...` (a batch's SPECs alike); other commands are named."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in HELP_OPTIONS["help_option_names"]:
            args = [RUN, *args]
        return super().parse_args(ctx, args)


JsonOpt = Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Also write the results to FILE as JSON.")]


class Where(str, Enum):
    local = "local"
    ray = "ray"


AddressOpt = Annotated[
    str | None, typer.Option("--address", metavar="HOST:PORT", show_default=False,
                             help="The Ray cluster's head node, for --executor ray (default: $RAY_ADDRESS).")
]


def _noun(run: Any) -> str:
    return "runs" if run.report.kind == "batch" else "cases"


class StopOnCtrlC:
    """The first Ctrl-C starts no more runs and pauses the running ones after their step; a second stops at once."""

    def __init__(self, progress: EvalProgress, noun: str = "cases") -> None:
        self.progress = progress
        self.noun = noun
        self.pressed = False

    def __enter__(self) -> StopOnCtrlC:
        self._int = signal.signal(signal.SIGINT, self._handle)
        self._term = signal.signal(signal.SIGTERM, self._now)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._int)
        signal.signal(signal.SIGTERM, self._term)

    def _now(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self.progress.stop("paused by the user (Ctrl-C)")
        errors.print(f"Pausing the running {self.noun} after their current step; press Ctrl-C again to stop at once.",
                     style="yellow", markup=False)


def providers() -> Any:
    """One sandbox provider per distinct sandbox setting, made once (the image is built then, if missing)."""
    made: dict[str, Any] = {}
    lock = threading.Lock()

    def provider_for(settings: Settings) -> Any:
        key = settings.sandbox.model_dump_json()
        with lock:
            if key not in made:
                made[key] = driving.sandbox_provider(settings)
            return made[key]

    return provider_for


def cluster(where: Where, address: str | None, parallel: int | None) -> Any:
    """The Ray executor, joined to its cluster before anything is made (None: the local one)."""
    if where is Where.local:
        if address is not None:
            raise UsageMistake("--address is for --executor ray", "add --executor ray, or leave --address out")
        return None
    from macrohard.eval.ray_executor import RayExecutor

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageMistake("--executor ray needs the cluster's address", "pass --address HOST:PORT, or set RAY_ADDRESS")
    executor = RayExecutor(address, parallel, model_factory=driving.model_factory(None))
    executor.connect()
    return executor


def fan_out(where: Where, address: str | None, parallel: int | None, json_out: Path | None,
            make: Callable[[int], Any]) -> None:
    """Join the cluster first (or stay here), then make the EvalRun for as many at once as it offers, and execute it."""
    joined = cluster(where, address, parallel)
    execute(make(joined.parallel if joined is not None else parallel or 1), joined, json_out)


def execute(run: Any, cluster: Any, json_out: Path | None) -> None:
    """Run an EvalRun (an eval or a batch) on the cluster, or here; show it live, then its report.

    Exit 4 if some are unfinished (resume goes on), else 1 if some could not be run (`invalid`, `error`)."""
    from macrohard.eval.executor import LocalExecutor
    from macrohard.eval.results import ERROR, INVALID, QUEUED

    parallel = run.report.parallel
    kind = run.report.kind
    if cluster is None:
        provider_for = providers()
        jobs = run.jobs()
        for job in jobs:  # before the live view: building an image prints, and a bad engine is one error
            provider_for(Settings.model_validate(job.settings))
        executor = LocalExecutor(parallel, provider_for, model_factory=driving.model_factory(None))
        where = ""
    else:
        executor, where = cluster, f" on the Ray cluster at {cluster.address}"
    again = f"macrohard {kind} resume {run.eval_id}" + (f" --executor ray --address {cluster.address}" if cluster else "")
    count = len(run.suite.cases)
    noun = ("case" if kind == "eval" else "run") + ("" if count == 1 else "s")
    what = f"{count} {noun} of {run.suite.path}" if kind == "eval" else f"{count} {noun} of specs in {run.suite.path}"
    console.print(Text.assemble(kind.capitalize() + " ", (run.eval_id, "bold"), plain(
        f": {what} ({run.report.model}), {parallel} at once{where}")), highlight=False)
    names = [c.name for c in run.suite.cases]
    with EvalProgress(console, names, scored=kind == "eval") as progress, StopOnCtrlC(progress, _noun(run)):
        try:
            report = run.execute(executor, progress)
        except KeyboardInterrupt:
            progress.__exit__(None, None, None)
            errors.print(plain(f"stopped; go on with: {again}", style="yellow"), highlight=False)
            sys.stdout.flush()
            sys.stderr.flush()
            # The runs are checkpointed: do not wait for their threads.
            os._exit(int(ExitCode.INTERRUPTED))
    print_report(console, report)
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n")
    console.print(f"results:  {run.folder / 'eval.json'}", highlight=False, markup=False)
    unfinished = [c.name for c in report.cases if c.status in (QUEUED, "paused", "running", "awaiting_approval")]
    if unfinished:  # first: resuming is what to do next, whatever else went wrong
        console.print(plain(f"unfinished: {', '.join(unfinished)}; go on with: {again}", style="yellow"))
        raise typer.Exit(int(ExitCode.PAUSED))
    broken = [f"{c.name} ({c.status})" for c in report.cases if c.status in (INVALID, ERROR)]
    if broken:  # a script or CI must not take a batch with runs that never ran for a success
        errors.print(plain(f"not run: {', '.join(broken)}; see the reasons above", style="red"), highlight=False)
        raise typer.Exit(int(ExitCode.FAILED))


def note_gates(settings: Settings, kind: str) -> None:
    """Say once that macrohard.toml's `approve` gates are off: an eval's cases and a batch's runs go unattended."""
    if settings.approve:
        noun = "a batch's runs" if kind == "batch" else "an eval's cases"
        errors.print(plain(f"note: approve = {list(settings.approve)} in the settings is not used: {noun} run "
                           "unattended, with no gate", style="yellow"), highlight=False)

"""`macrohard eval`: run a suite of cases and score them; resume an eval; compare two."""

from __future__ import annotations

import os
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from macrohard.cli import drive as driving
from macrohard.cli.common import (
    HELP_OPTIONS,
    ConfigOpt,
    ExitCode,
    ParallelOpt,
    UsageMistake,
    WorkspacesOpt,
    at_least,
    console,
    errors,
    settings_for,
    user_errors,
)
from macrohard.cli.evalview import EvalProgress, print_comparison, print_report
from macrohard.cli.helptext import Command
from macrohard.cli.show import plain
from macrohard.config import Settings

RUN, RESUME, COMPARE = "run", "resume", "compare"


class SuiteFirst(TyperGroup):
    """`macrohard eval SUITE ...` is `macrohard eval run SUITE ...`; `resume` and `compare` are named."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in HELP_OPTIONS["help_option_names"]:
            args = [RUN, *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=SuiteFirst, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_OPTIONS,
    help="Measure the company on a suite of cases, each scored by hidden acceptance tests.\n\n"
         "macrohard eval SUITE runs one (the run command); resume goes on with a stopped eval; "
         "compare shows two evals side by side.",
)

JsonOpt = Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Also write the results to FILE as JSON.")]
CasesAtOnceOpt = Annotated[
    int | None, typer.Option("--parallel", metavar="N", callback=at_least(1), show_default=False,
                             help="Cases at once (1 or more; default: 1, or with --executor ray as many as the "
                                  "cluster's nodes offer); each case's run works on --max-parallel tickets at once.")
]


class Where(str, Enum):
    local = "local"
    ray = "ray"


ExecutorOpt = Annotated[
    Where, typer.Option("--executor", help="Where the cases run: local (this process) or ray (tasks on the Ray "
                        "cluster at --address, on its nodes that offer the `docker` resource).")
]
AddressOpt = Annotated[
    str | None, typer.Option("--address", metavar="HOST:PORT", show_default=False,
                             help="The Ray cluster's head node, for --executor ray (default: $RAY_ADDRESS).")
]


class StopOnCtrlC:
    """The first Ctrl-C starts no more cases and pauses the running ones after their step; a second stops at once."""

    def __init__(self, progress: EvalProgress) -> None:
        self.progress = progress
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
        errors.print("Pausing the running cases after their current step; press Ctrl-C again to stop at once.",
                     style="yellow", markup=False)


def _providers() -> Any:
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


def _cluster(where: Where, address: str | None, parallel: int | None) -> Any:
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


def _execute(run: Any, cluster: Any, json_out: Path | None) -> None:
    from macrohard.eval.executor import LocalExecutor
    from macrohard.eval.results import QUEUED

    parallel = run.report.parallel
    if cluster is None:
        provider_for = _providers()
        jobs = run.jobs()
        for job in jobs:  # before the live view: building an image prints, and a bad engine is one error
            provider_for(Settings.model_validate(job.settings))
        executor = LocalExecutor(parallel, provider_for, model_factory=driving.model_factory(None))
        where = ""
    else:
        executor, where = cluster, f" on the Ray cluster at {cluster.address}"
    again = f"macrohard eval resume {run.eval_id}" + (f" --executor ray --address {cluster.address}" if cluster else "")
    console.print(Text.assemble("Eval ", (run.eval_id, "bold"), plain(
        f": {len(run.suite.cases)} cases of {run.suite.path} ({run.report.model}), {parallel} at once{where}")),
        highlight=False)
    with EvalProgress(console, [c.name for c in run.suite.cases]) as progress, StopOnCtrlC(progress):
        try:
            report = run.execute(executor, progress)
        except KeyboardInterrupt:
            progress.__exit__(None, None, None)
            errors.print(plain(f"stopped; go on with: {again}", style="yellow"), highlight=False)
            sys.stdout.flush()
            sys.stderr.flush()
            # Cases' runs are checkpointed: do not wait for their threads.
            os._exit(int(ExitCode.INTERRUPTED))
    print_report(console, report)
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n")
    console.print(f"results:  {run.folder / 'eval.json'}", highlight=False, markup=False)
    unfinished = [c.name for c in report.cases if c.status in (QUEUED, "paused", "running", "awaiting_approval")]
    if unfinished:
        console.print(plain(f"unfinished: {', '.join(unfinished)}; go on with: {again}", style="yellow"))
        raise typer.Exit(int(ExitCode.PAUSED))


@eval_app.command(RUN, cls=Command)
@user_errors
def run_suite(
    suite: Annotated[Path, typer.Argument(metavar="SUITE", help="Folder of cases: CASE/spec.md, CASE/acceptance/, "
                                          "optional CASE/script.yaml and CASE/case.toml.", show_default=False)],
    json_out: JsonOpt = None,
    parallel: CasesAtOnceOpt = None,
    executor: ExecutorOpt = Where.local,
    address: AddressOpt = None,
    max_parallel: ParallelOpt = None,
    live: Annotated[bool, typer.Option("--live", help="Ask the configured model for every case, even one with a script.")] = False,
    model: Annotated[str | None, typer.Option("--model", metavar="NAME", help="Ask this model (at the configured "
                                              "endpoint) for every case, instead of the cases' scripts.")] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run every case of SUITE as a run of its own and score it against its hidden acceptance tests.

    A case with a script.yaml runs offline on it; one without (or every case with --live
    or --model) asks the configured model. Results go to WORKSPACES/evals/EVAL/eval.json.
    """
    from macrohard.eval.runner import EvalOptions, EvalRun

    here = settings_for(config, workspaces=workspaces)
    options = EvalOptions(suite=suite, config=config, live=live, model=model, max_parallel=max_parallel)
    cluster = _cluster(executor, address, parallel)
    parallel = cluster.parallel if cluster is not None else parallel or 1
    _execute(EvalRun.start(options, here.workspaces, parallel, executor.value), cluster, json_out)


@eval_app.command(RESUME, cls=Command)
@user_errors
def resume_eval(
    eval_id: Annotated[str, typer.Argument(metavar="EVAL", help="Eval id, or `latest`.", show_default=False)],
    json_out: JsonOpt = None,
    parallel: CasesAtOnceOpt = None,
    executor: ExecutorOpt = Where.local,
    address: AddressOpt = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Go on with a stopped eval: ended runs are scored, paused or crashed ones resumed, the rest started."""
    from macrohard.eval.runner import EvalRun

    here = settings_for(config, workspaces=workspaces)
    cluster = _cluster(executor, address, parallel)
    parallel = cluster.parallel if cluster is not None else parallel or 1
    _execute(EvalRun.resume(eval_id, here.workspaces, parallel, executor.value), cluster, json_out)


@eval_app.command(COMPARE, cls=Command)
@user_errors
def compare_evals(
    a: Annotated[Path, typer.Argument(metavar="A", help="An eval's results: a --json file, eval.json or its folder.", show_default=False)],
    b: Annotated[Path, typer.Argument(metavar="B", help="The eval to set against A.", show_default=False)],
) -> None:
    """Two evals side by side, case by case, with B's differences from A."""
    from macrohard.eval.compare import compare, load_report

    print_comparison(console, compare(load_report(a), load_report(b)))

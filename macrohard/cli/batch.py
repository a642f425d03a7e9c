"""`macrohard batch`: many specs run at once, here or on a Ray cluster, reported but not scored; resume a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from macrohard.cli.common import HELP_OPTIONS, ConfigOpt, ParallelOpt, WorkspacesOpt, at_least, settings_for, user_errors
from macrohard.cli.fanout import (
    RESUME, RUN, AddressOpt, JsonOpt, RunFirst, Where, fan_out, note_gates,
)
from macrohard.cli.helptext import Command

batch_app = typer.Typer(
    cls=RunFirst, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_OPTIONS,
    help="Run many specs at once, each a run of its own, on this machine or a Ray cluster.\n\n"
         "macrohard batch SPEC... starts one (the run command); resume goes on with a stopped batch.",
)

RunsAtOnceOpt = Annotated[
    int | None, typer.Option("--parallel", metavar="N", callback=at_least(1), show_default=False,
                             help="Runs at once (1 or more; default: 1, or with --executor ray as many as the "
                                  "cluster's nodes offer); each run works on --max-parallel tickets at once.")
]
ExecutorOpt = Annotated[
    Where, typer.Option("--executor", help="Where the runs go: local (this process) or ray (tasks on the Ray "
                        "cluster at --address, on its nodes that offer the `docker` resource).")
]


@batch_app.command(RUN, cls=Command)
@user_errors
def run_batch(
    specs: Annotated[list[Path], typer.Argument(metavar="SPEC", show_default=False, help=(
        "Spec files (NAME.md: the run is named NAME) or case folders (spec.md, optional script.yaml and case.toml; "
        "an acceptance/ folder there is not run)."))],
    json_out: JsonOpt = None,
    parallel: RunsAtOnceOpt = None,
    executor: ExecutorOpt = Where.local,
    address: AddressOpt = None,
    max_parallel: ParallelOpt = None,
    live: Annotated[bool, typer.Option("--live", help="Ask the configured model for every run, even a case "
                                       "folder's with a script.")] = False,
    model: Annotated[str | None, typer.Option("--model", metavar="NAME", help="Ask this model (at the configured "
                                              "endpoint) for every run, instead of the case folders' scripts.")] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run every SPEC as a run of its own, several at once, and report each: status, released, tickets, cost.

    Nothing is scored (no hidden acceptance tests): use `macrohard eval` for that. A case
    folder with a script.yaml runs offline on it; a spec file (or every run with --live or
    --model) asks the configured model. Two SPECs may not give runs the same name. The
    report goes to WORKSPACES/evals/BATCH/eval.json, which `macrohard serve` shows.
    """
    from macrohard.eval.runner import EvalOptions, EvalRun

    here = settings_for(config, workspaces=workspaces)
    note_gates(here, "batch")
    # suite: where the specs are, which the batch's start works out from them.
    options = EvalOptions(suite=Path("."), specs=specs, config=config, live=live, model=model,
                          max_parallel=max_parallel)
    fan_out(executor, address, parallel, json_out, lambda n: EvalRun.start(options, here.workspaces, n, executor.value))


@batch_app.command(RESUME, cls=Command)
@user_errors
def resume_batch(
    batch_id: Annotated[str, typer.Argument(metavar="BATCH", help="Batch id, or `latest`.", show_default=False)],
    json_out: JsonOpt = None,
    parallel: RunsAtOnceOpt = None,
    executor: ExecutorOpt = Where.local,
    address: AddressOpt = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Go on with a stopped batch: ended runs are reported, paused or crashed ones resumed, the rest started."""
    from macrohard.eval.runner import EvalRun

    here = settings_for(config, workspaces=workspaces)
    fan_out(executor, address, parallel, json_out,
            lambda n: EvalRun.resume(batch_id, here.workspaces, n, executor.value, kind="batch"))

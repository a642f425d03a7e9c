"""`macrohard eval`: run a suite of cases and score them; resume an eval; compare two."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from macrohard.cli.common import (
    HELP_OPTIONS, ConfigOpt, ParallelOpt, WorkspacesOpt, at_least, console, settings_for, user_errors,
)
from macrohard.cli.evalview import print_comparison
from macrohard.cli.fanout import (
    RESUME, RUN, AddressOpt, JsonOpt, RunFirst, Where, fan_out, note_gates,
)
from macrohard.cli.helptext import Command

COMPARE = "compare"


eval_app = typer.Typer(
    cls=RunFirst, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_OPTIONS,
    help="Measure the company on a suite of cases, each scored by hidden acceptance tests.\n\n"
         "macrohard eval SUITE runs one (the run command); resume goes on with a stopped eval; "
         "compare shows two evals side by side.",
)

CasesAtOnceOpt = Annotated[
    int | None, typer.Option("--parallel", metavar="N", callback=at_least(1), show_default=False,
                             help="Cases at once (1 or more; default: 1, or with --executor ray as many as the "
                                  "cluster's nodes offer); each case's run works on --max-parallel tickets at once.")
]
ExecutorOpt = Annotated[
    Where, typer.Option("--executor", help="Where the cases run: local (this process) or ray (tasks on the Ray "
                        "cluster at --address, on its nodes that offer the `docker` resource).")
]


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
    note_gates(here, "eval")
    options = EvalOptions(suite=suite, config=config, live=live, model=model, max_parallel=max_parallel)
    fan_out(executor, address, parallel, json_out, lambda n: EvalRun.start(options, here.workspaces, n, executor.value))


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
    fan_out(executor, address, parallel, json_out, lambda n: EvalRun.resume(eval_id, here.workspaces, n, executor.value))


@eval_app.command(COMPARE, cls=Command)
@user_errors
def compare_evals(
    a: Annotated[Path, typer.Argument(metavar="A", help="An eval's results: a --json file, eval.json or its folder.", show_default=False)],
    b: Annotated[Path, typer.Argument(metavar="B", help="The eval to set against A.", show_default=False)],
) -> None:
    """Two evals side by side, case by case, with B's differences from A."""
    from macrohard.errors import ConfigError
    from macrohard.eval.compare import compare, load_report

    reports = load_report(a), load_report(b)
    for path, report in zip((a, b), reports):
        if report.kind != "eval":  # nothing was scored: the table would be all 0/0
            raise ConfigError(f"{path} is a {report.kind}, whose runs are not scored", "compare two evals")
    print_comparison(console, compare(*reports))

"""An eval: a suite's cases run by an executor, with the report kept in the eval's folder.

    WORKSPACES/evals/<eval-id>/
      eval.json            the report so far: options, every case's result, the totals
      scoring/<case>.jsonl the acceptance tests the eval ran on each case's release (or main)
    WORKSPACES/<eval-id>-<case>/   each case's run: a normal run folder

Case runs sit beside every other run, so `macrohard runs`, `resume`, `audit`, `replay`
and the viewer treat them as any run. eval.json is rewritten (atomically) as each case
ends, so a reader (the viewer) sees the eval as it goes, and an eval that was stopped
goes on with `macrohard eval resume EVAL`: ended runs are scored as they are, paused or
crashed ones resumed, the rest started. A batch (eval/batch.py) is an EvalRun whose cases
are the specs it was given, unscored, kept here too with `kind: "batch"`; resumed with
`macrohard batch resume`, it goes on as a batch.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from macrohard.company.run import new_run_id
from macrohard.config import Settings, load_settings
from macrohard.control import RunControl
from macrohard.errors import ConfigError, MacrohardError
from macrohard.eval.executor import CaseExecutor, CaseJob, CaseWatch
from macrohard.eval.results import INVALID, QUEUED, CaseResult, EvalReport, totals_of
from macrohard.eval.batch import load_specs
from macrohard.eval.casetoml import CASE_SETTINGS
from macrohard.eval.suite import Case, Suite, load_suite
from macrohard.transcript.log import Event

EVALS = "evals"
EVAL_JSON = "eval.json"
ARTICLE = {"eval": "an eval", "batch": "a batch"}


class EvalOptions(BaseModel):
    """How the eval was asked for: kept in eval.json, so a resumed eval runs its remaining cases alike."""

    suite: Path  # a batch: the folder its specs are in
    specs: list[Path] | None = None  # a batch's SPECs (spec files or case folders), absolute; None: an eval of suite
    config: Path | None = None
    live: bool = False  # the configured endpoint for every case, scripts or not
    model: str | None = None  # [model] model for every case
    max_parallel: int | None = None  # tickets at once in each case's run

    @property
    def kind(self) -> Literal["eval", "batch"]:
        return "eval" if self.specs is None else "batch"

    def cases(self, strict: bool = False) -> Suite:
        """The eval's suite, or the batch's runs (strict: a SPEC's problem is an error, for a batch not started yet)."""
        return load_suite(self.suite) if self.specs is None else load_specs(self.specs, strict=strict)


def eval_dir(workspaces: Path, eval_id: str) -> Path:
    return workspaces / EVALS / eval_id


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def case_settings(options: EvalOptions, case: Case, workspaces: Path) -> Settings:
    """The case's settings: macrohard.toml (and the environment), its case.toml, then the eval's own.

    case.toml holds only the keys a case may set (eval/casetoml.py); of those, the sandbox
    and the tree limits may be tightened, never loosened: a suite may come from anywhere.
    """
    flags: dict[str, Any] = {"workspaces": workspaces.resolve(), "acceptance": case.acceptance, "approve": []}
    if options.max_parallel is not None:
        flags["max_parallel"] = options.max_parallel
    if options.model is not None:
        flags["model"] = {"model": options.model}
    try:
        settings = load_settings(options.config, overrides=_merged(case.settings, flags))
    except ConfigError as e:
        raise ConfigError(f"case {case.name}'s settings: {e.message}", f"fix its {CASE_SETTINGS}") from None
    base = load_settings(options.config)
    weaker = settings.sandbox.weakened(than=base.sandbox, was="macrohard.toml has")
    weaker += [f"workspace.{k} = {v} (macrohard.toml has {getattr(base.workspace, k)})"
               for k, v in settings.workspace.model_dump().items() if v > getattr(base.workspace, k)]
    if weaker:
        raise ConfigError(f"case {case.name}'s case.toml weakens the sandbox: {'; '.join(weaker)}",
                          "set it in macrohard.toml if you mean it")
    return settings


def describe_model(suite: Suite, options: EvalOptions) -> str:
    """What answers the cases: their scripts, the configured model, the models their case.toml names, or a mix."""
    configured = options.model or load_settings(options.config).model.model or "the configured model"
    if options.model:  # --model goes over every case.toml
        return configured
    runnable = [c for c in suite.cases if c.problem is None]
    asking = [c for c in runnable if options.live or c.script is None]
    own: dict[str, list[str]] = {}  # model: the cases whose case.toml names it
    for c in asking:
        named = (c.settings.get("model") or {}).get("model")
        if isinstance(named, str):
            own.setdefault(named, []).append(c.name)
    theirs, others = ("the cases' scripts", "cases") if options.kind == "eval" else ("the case folders' scripts", "runs")
    one = "case" if options.kind == "eval" else "run"
    parts: list[str] = []
    if len(asking) < len(runnable) or not runnable:
        parts.append(theirs)
    if len(asking) > sum(len(names) for names in own.values()):
        parts.append(configured if len(parts) == 0 else f"{configured} for {others} without one")
    parts += [f"{model} for {one if len(names) == 1 else others} {', '.join(names)}" for model, names in own.items()]
    return "; ".join(parts)


class EvalRun:
    """One eval of a suite; `start` a new one or `resume` one, then `execute`."""

    def __init__(self, folder: Path, workspaces: Path, options: EvalOptions, report: EvalReport,
                 suite: Suite | None = None) -> None:
        self.folder = folder
        self.workspaces = workspaces
        self.options = options
        self.report = report
        self.suite = suite if suite is not None else options.cases()
        self._lock = threading.Lock()

    @classmethod
    def start(cls, options: EvalOptions, workspaces: Path, parallel: int, executor: str = "local") -> EvalRun:
        """A new eval (or batch), checked in full before its folder is made: a refused one leaves nothing behind."""
        suite = options.cases(strict=True)  # errors name the suite, or the specs, as given
        # Absolute, not resolved: a SPEC that is a link keeps the name it was given, in this session and the next.
        specs = [p.absolute() for p in options.specs] if options.specs is not None else None
        options = options.model_copy(update={"suite": suite.path, "specs": specs,
                                             "config": options.config.resolve() if options.config else None})
        if options.kind == "batch":  # every run's settings too (a case.toml that loosens the sandbox, a bad value)
            refused: list[ConfigError] = []
            for case in suite.cases:
                try:
                    case_settings(options, case, workspaces)
                except ConfigError as e:
                    refused.append(e)
            if refused:
                hints = list(dict.fromkeys(e.hint for e in refused if e.hint))
                raise ConfigError("; ".join(e.message for e in refused), "; ".join(hints) or None)
        eval_id = new_run_id()
        folder = eval_dir(workspaces, eval_id)
        report = EvalReport(eval_id=eval_id, kind=options.kind, suite=suite.path, model=describe_model(suite, options),
                            parallel=parallel, executor=executor,
                            max_parallel=options.max_parallel, started_at=time.time(),
                            cases=[CaseResult(name=c.name, status=QUEUED) for c in suite.cases])
        folder.mkdir(parents=True)
        (folder / "options.json").write_text(options.model_dump_json(indent=2) + "\n")
        run = cls(folder, workspaces, options, report, suite)
        run._write()
        return run

    @classmethod
    def resume(cls, eval_id: str, workspaces: Path, parallel: int, executor: str = "local",
               kind: Literal["eval", "batch"] = "eval") -> EvalRun:
        """The eval (kind batch: the batch) eval_id, or `latest` of that kind, to go on with."""
        if eval_id == "latest":
            found = sorted(p.parent.name for p in (workspaces / EVALS).glob(f"*/{EVAL_JSON}") if _kind(p) == kind)
            eval_id = found[-1] if found else eval_id
        folder = eval_dir(workspaces, eval_id)
        if not (folder / EVAL_JSON).is_file():
            raise ConfigError(f"no {kind} {eval_id!r} in {workspaces / EVALS}",
                              f"give {ARTICLE[kind]} id that `macrohard {kind}` printed")
        options = EvalOptions.model_validate_json((folder / "options.json").read_text())
        report = EvalReport.model_validate_json((folder / EVAL_JSON).read_text())
        if report.kind != kind:
            raise ConfigError(f"{eval_id} is {ARTICLE[report.kind]}, not {ARTICLE[kind]}",
                              f"go on with it with `macrohard {report.kind} resume {eval_id}`")
        return cls(folder, workspaces, options, report.model_copy(update={"parallel": parallel, "executor": executor,
                                                                            "finished_at": None}))

    @property
    def eval_id(self) -> str:
        return self.report.eval_id

    def run_id(self, case: Case) -> str:
        return f"{self.eval_id}-{case.name}"

    def jobs(self) -> list[CaseJob]:
        """The cases to run; those that cannot be run are scored `invalid` at once, with why."""
        jobs: list[CaseJob] = []
        for case in self.suite.cases:
            problem = case.problem
            settings: Settings | None = None
            if problem is None:
                try:
                    settings = case_settings(self.options, case, self.workspaces)
                except MacrohardError as e:
                    problem = e.message
            if problem is not None or settings is None:
                self._record(CaseResult(name=case.name, status=INVALID, reason=problem))
                continue
            jobs.append(CaseJob(case=case, run_id=self.run_id(case), settings=settings.model_dump(mode="json"),
                                live=self.options.live or self.options.model is not None,
                                scoring=(self.folder / "scoring" / f"{case.name}.jsonl").resolve()))
        return jobs

    def execute(self, executor: CaseExecutor, watch: CaseWatch | None = None) -> EvalReport:
        started = time.monotonic()
        jobs = self.jobs()
        executor.run(jobs, _Recording(self, watch))
        wall = self.report.wall_s + time.monotonic() - started
        with self._lock:
            self.report = self.report.model_copy(update={"finished_at": time.time(), "wall_s": wall})
            self._write()
        return self.report

    def _record(self, result: CaseResult) -> None:
        with self._lock:
            earlier = next((c for c in self.report.cases if c.name == result.name), None)
            if earlier is not None and earlier.status != QUEUED:  # an earlier session's time on it counts too
                result = result.model_copy(update={"wall_s": earlier.wall_s + result.wall_s})
            if earlier is None:
                self.report = self.report.model_copy(update={"cases": [*self.report.cases, result]})
            self.report = self.report.with_result(result)
            self._write()

    def _write(self) -> None:
        self.report = self.report.model_copy(update={"totals": totals_of(self.report.cases)})
        path = self.folder / EVAL_JSON
        partial = path.with_suffix(".json.tmp")
        partial.write_text(self.report.model_dump_json(indent=2) + "\n")
        os.replace(partial, path)


def _kind(eval_json: Path) -> str:
    """An eval.json's kind (an unreadable one is no kind, and not picked as `latest`)."""
    try:
        return EvalReport.model_validate_json(eval_json.read_text()).kind
    except (ValueError, OSError):
        return ""


class _Recording:
    """Passes the executor's news on, keeping each result in the eval's report as it comes."""

    def __init__(self, run: EvalRun, watch: CaseWatch | None) -> None:
        self.run = run
        self.watch = watch

    def starting(self, job: CaseJob) -> bool:
        return self.watch.starting(job) if self.watch is not None else True

    def event(self, name: str, event: Event) -> None:
        if self.watch is not None:
            self.watch.event(name, event)

    def control(self, name: str, control: RunControl) -> None:
        if self.watch is not None:
            self.watch.control(name, control)

    def placed(self, name: str, node: str) -> None:
        if self.watch is not None:
            self.watch.placed(name, node)

    def finished(self, result: CaseResult) -> None:
        self.run._record(result)
        if self.watch is not None:
            self.watch.finished(result)

"""Running cases: one case as a function of a serialisable job, and executors that run many.

`run_case` is everything one case needs, given a job (plain data: it can cross to another
process or a cluster node) and a sandbox provider: it creates the case's run, or goes on
with it when an earlier eval left it paused or crashed, and scores it (a batch's run, with
no acceptance tests, is reported unscored: released when its tag is in git). An executor runs
a list of jobs; `LocalExecutor` runs `parallel` of them at once in threads of this
process (a case is mostly waiting on models and containers). `RayExecutor`
(eval/ray_executor.py) calls `run_case` on cluster nodes, where the sandboxes are, and
hands the results and events back through the same CaseWatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from macrohard.company.failures import describe_failure
from macrohard.company.run import CompanyRun, RunPaths, load_record
from macrohard.config import ModelSettings, Settings
from macrohard.control import RunControl
from macrohard.errors import ConfigError, MacrohardError, ScriptError
from macrohard.eval.acceptance import check_acceptance, tested_commit
from macrohard.eval.results import ERROR, INVALID, CaseResult
from macrohard.eval.scoring import report_run, score_run
from macrohard.eval.suite import Case
from macrohard.llm.base import ChatModel
from macrohard.sandbox.base import SandboxProvider
from macrohard.transcript.log import Event, TranscriptLog
from macrohard.workspace.git import GitWorkspace

ModelFactory = Callable[[ModelSettings], ChatModel]


class CaseJob(BaseModel):
    """One case to run: plain data, so a worker elsewhere can take it."""

    case: Case
    run_id: str
    settings: dict[str, Any]  # the case's Settings, as JSON
    live: bool = False  # ask the configured endpoint even if the case has a script
    scoring: Path  # the transcript of acceptance tests the eval runs itself

    def run_dir(self) -> Path:
        return Path(self.settings["workspaces"]) / self.run_id


class CaseWatch(Protocol):
    """What an executor tells the eval as cases go; called from the executor's threads."""

    def starting(self, job: CaseJob) -> bool:
        """Whether to start this case now (False: the eval is stopping; it stays queued)."""
        ...

    def event(self, name: str, event: Event) -> None:
        """An event of a case's run (for the live view)."""
        ...

    def control(self, name: str, control: RunControl) -> None:
        """A case's run control, to pause it (on a cluster: anything with `request_pause(reason)`)."""
        ...

    def placed(self, name: str, node: str) -> None:
        """Where a case landed, when an executor spreads cases over machines."""
        ...

    def finished(self, result: CaseResult) -> None: ...


class CaseExecutor(Protocol):
    def run(self, jobs: Sequence[CaseJob], watch: CaseWatch) -> list[CaseResult]:
        """Run the jobs, telling watch as they go; the results of the cases that ran, in the order they ended."""
        ...


def _ended(run_dir: Path) -> bool:
    record = load_record(run_dir)
    if record.status in ("done", "partial"):
        return True
    return record.status == "failed" and not record.is_live()


def open_or_create(job: CaseJob, model_factory: ModelFactory | None) -> CompanyRun | None:
    """The case's run to execute: a new one, or the one an earlier eval left unfinished; None when it has ended."""
    run_dir = job.run_dir()
    if RunPaths(run_dir=run_dir).run_json.is_file():
        if _ended(run_dir):
            return None
        return CompanyRun.open(run_dir, model_factory=model_factory)
    settings = Settings.model_validate(job.settings)
    script = None if job.live else job.case.script
    assert job.case.spec is not None
    return CompanyRun.create(job.case.spec, settings, script=script,
                             model_factory=model_factory if script is None else None, run_id=job.run_id)


def note_retry(job: CaseJob, **why: Any) -> bool:
    """Record in the case's run that an executor starts it again (its worker died); False: no run to go on with.

    Only a run that will be resumed gets the event: an ended one is only scored again,
    and its transcript ends where run.json says it does.
    """
    paths = RunPaths(run_dir=job.run_dir())
    if not paths.run_json.is_file() or _ended(paths.run_dir):
        return False
    transcript = TranscriptLog(paths.transcript, job.run_id)
    if transcript.repaired_bytes:  # the dead worker was cut off mid-write; the run's own open finds nothing left to say
        transcript.append("transcript.repaired", dropped_bytes=transcript.repaired_bytes,
                          reason="a torn last line from a process that was killed mid-write")
    transcript.append("executor.retry", **why)
    return True


def run_case(job: CaseJob, provider: SandboxProvider, watch: CaseWatch, model_factory: ModelFactory | None) -> CaseResult:
    """Run (or go on with) one case and score it (a batch's: report it); one that cannot start is `invalid` or `error`."""
    started = time.monotonic()
    name = job.case.name
    try:
        run = open_or_create(job, model_factory)
        if run is not None:
            run.check_resumable()
            run.execute(provider, on_event=lambda e: watch.event(name, e),
                        control_hook=lambda c: watch.control(name, c))
    except (ConfigError, ScriptError) as e:
        if not RunPaths(run_dir=job.run_dir()).run_json.is_file():
            return CaseResult(name=name, status=INVALID, reason=e.message, run_id=job.run_id,
                              wall_s=time.monotonic() - started)
    except MacrohardError as e:
        if not RunPaths(run_dir=job.run_dir()).run_json.is_file():
            return CaseResult(name=name, status=ERROR, reason=str(e), run_id=job.run_id, wall_s=time.monotonic() - started)
    # Anything else the run raised is in its run.json (status failed, and why); scored like any run.
    except Exception as e:  # noqa: BLE001 - one case's failure must not stop the suite
        if not RunPaths(run_dir=job.run_dir()).run_json.is_file():
            return CaseResult(name=name, status=ERROR, reason=describe_failure(e), run_id=job.run_id,
                              wall_s=time.monotonic() - started)
    record = load_record(job.run_dir())
    if record.is_live():  # another process drives it (an eval resumed twice at once): not ours to score yet
        return CaseResult(name=name, status="running", reason="its run is being driven by another macrohard process",
                          run_id=job.run_id, wall_s=time.monotonic() - started)
    settings = Settings.model_validate(record.settings)
    if job.case.acceptance is None:  # a batch's run: reported, not scored
        tested = tested_commit(GitWorkspace(job.run_dir(), settings.workspace))
        result = report_run(name, job.run_dir(), settings, released=tested is not None and tested[1] == "release")
        return result.model_copy(update={"wall_s": time.monotonic() - started})

    def check() -> dict[str, Any] | None:
        assert job.case.acceptance is not None
        return check_acceptance(job.run_dir(), job.run_id, settings, job.case.acceptance, provider, job.scoring)

    result = score_run(name, job.run_dir(), settings, job.case.tests, check)
    return result.model_copy(update={"wall_s": time.monotonic() - started})


class LocalExecutor:
    """`parallel` cases at once, in threads of this process; each case's run has its own `max_parallel` tickets."""

    def __init__(
        self, parallel: int, provider_for: Callable[[Settings], SandboxProvider], model_factory: ModelFactory | None = None
    ) -> None:
        self.parallel = max(1, parallel)
        self.provider_for = provider_for
        self.model_factory = model_factory

    def _one(self, job: CaseJob, watch: CaseWatch) -> CaseResult | None:
        if not watch.starting(job):
            return None
        try:
            provider = self.provider_for(Settings.model_validate(job.settings))
            return run_case(job, provider, watch, self.model_factory)
        except Exception as e:  # noqa: BLE001 - the harness failed on one case; the suite goes on
            return CaseResult(name=job.case.name, status=ERROR, reason=describe_failure(e), run_id=job.run_id)

    def run(self, jobs: Sequence[CaseJob], watch: CaseWatch) -> list[CaseResult]:
        results: list[CaseResult] = []
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="case") as pool:
            futures = [pool.submit(self._one, job, watch) for job in jobs]
            for future in as_completed(futures):
                result = future.result()
                if result is not None:
                    watch.finished(result)
                    results.append(result)
        return results

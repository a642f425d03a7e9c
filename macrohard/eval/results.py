"""What an eval reports: one result per case and the totals, as pydantic models.

They are the JSON of `macrohard eval --json FILE` and of the eval folder's eval.json,
which `macrohard eval compare` and the viewer read back. A case's `status` is its run's
(done, partial, failed, paused, ...), or `invalid` (the case could not be run; `reason`
says why) or `error` (the harness failed on it; `reason` says how). A batch (eval/batch.py)
is the same report with `kind: "batch"`: its runs are not scored, so their acceptance
fields stay empty and `released` is what counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_serializer

INVALID, ERROR, QUEUED = "invalid", "error", "queued"


class CaseResult(BaseModel):
    name: str
    status: str
    reason: str | None = None  # why it failed, paused, could not be run, or scored less
    run_id: str | None = None
    released: bool = False  # a release was tagged
    # Released, and the hidden acceptance tests passed on the release by the hardened verdict
    # (nothing skipped, missing or cut short, no forged report).
    solved: bool = False
    acceptance_passed: int = 0
    acceptance_total: int = 0  # at least the tests the acceptance files define (eval/suite.py)
    # What the eval ran them on: the release's commit, or main's head for a run that
    # released nothing; None: not run (no main).
    acceptance_on: Literal["release", "main"] | None = None
    tickets_total: int = 0
    tickets_merged: int = 0
    tickets_failed: int = 0
    tickets_blocked: int = 0
    attempts: int = 0  # engineer attempts over all tickets
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # model calls whose model has no price in the config (their cost is unknown, not 0)
    wall_s: float = 0.0  # the case from start to scored
    run_s: float = 0.0  # of which the run itself
    tamper: dict[str, int] = Field(default_factory=dict)  # events of the orchestrator catching a role at it, by kind
    tamper_events: int = 0
    node: str | None = None  # where it ran, when an executor spreads cases over machines (a Ray node)
    retries: int = 0  # times the executor started it again after the worker running it died

    @field_serializer("cost_usd")
    def _dollars(self, value: float) -> float:
        return round(value, 6)

    @field_serializer("wall_s", "run_s")
    def _seconds(self, value: float) -> float:
        return round(value, 3)

    @property
    def score(self) -> float:
        return self.acceptance_passed / self.acceptance_total if self.acceptance_total else 0.0


class EvalTotals(BaseModel):
    cases: int = 0
    scored: int = 0  # cases that ran (not invalid, not queued)
    solved: int = 0
    released: int = 0
    invalid: int = 0
    acceptance_passed: int = 0
    acceptance_total: int = 0
    tickets_total: int = 0
    tickets_merged: int = 0
    tickets_failed: int = 0
    tickets_blocked: int = 0
    attempts: int = 0
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    wall_s: float = 0.0  # summed over cases (the eval's own wall time is EvalReport.wall_s)
    tamper_events: int = 0

    @field_serializer("cost_usd")
    def _dollars(self, value: float) -> float:
        return round(value, 6)

    @field_serializer("wall_s")
    def _seconds(self, value: float) -> float:
        return round(value, 3)

    @property
    def pass_rate(self) -> float:
        return self.acceptance_passed / self.acceptance_total if self.acceptance_total else 0.0


def totals_of(cases: Iterable[CaseResult]) -> EvalTotals:
    t = EvalTotals()
    for c in cases:
        t.cases += 1
        t.invalid += c.status == INVALID
        t.scored += c.status not in (INVALID, QUEUED)
        t.solved += c.solved
        t.released += c.released
        for name in ("acceptance_passed", "acceptance_total", "tickets_total", "tickets_merged", "tickets_failed",
                     "tickets_blocked", "attempts", "model_calls", "tokens", "cost_usd", "unpriced_calls", "wall_s", "tamper_events"):
            setattr(t, name, getattr(t, name) + getattr(c, name))
    return t


class EvalReport(BaseModel):
    eval_id: str
    kind: Literal["eval", "batch"] = "eval"  # a batch: plain runs of specs, reported, not scored
    suite: Path  # a batch: the folder its specs are in
    model: str = ""  # what answered: the cases' scripts, or the configured endpoint
    parallel: int = 1  # cases at once
    executor: str = "local"  # what ran the cases: local (threads of one process) or ray (tasks on a cluster)
    max_parallel: int | None = None  # tickets at once in each case's run, when the eval set it
    started_at: float
    finished_at: float | None = None
    wall_s: float = 0.0
    cases: list[CaseResult]
    totals: EvalTotals = Field(default_factory=EvalTotals)

    @field_serializer("wall_s")
    def _seconds(self, value: float) -> float:
        return round(value, 3)

    def with_result(self, result: CaseResult) -> EvalReport:
        cases = [result if c.name == result.name else c for c in self.cases]
        return self.model_copy(update={"cases": cases, "totals": totals_of(cases)})

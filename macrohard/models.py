"""Domain models: the typed artefacts the company passes around. No I/O here."""

from __future__ import annotations

import getpass
import hashlib
import time
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Spec(BaseModel):
    """What the user asked for."""

    title: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class TicketStatus(str, Enum):
    # Module-level enum: LangGraph's serializer rebuilds nested enums as None.
    TODO = "todo"
    IN_PROGRESS = "in_progress"  # its roles are at work
    AWAITING_VERDICT = "awaiting_verdict"  # its roles are done; the judge runs the verdict next
    PASSED = "passed"  # the verdict passed on the ticket branch, waiting for integration
    MERGED = "merged"
    FAILED = "failed"  # attempts ran out
    BLOCKED = "blocked"  # a ticket it depends on failed


class Dispute(BaseModel):
    """An engineer's claim that a test contradicts its ticket, and the ruling on it."""

    id: str  # D-<ticket>-<n>
    ticket: str
    attempt: int
    test: str
    reason: str
    ruling: Literal["uphold", "change"] | None = None  # "change": the test is wrong
    ruled_by: str | None = None
    ruling_reason: str | None = None


class Ticket(BaseModel):
    id: str
    title: str
    description: str
    acceptance_criteria: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    status: TicketStatus = TicketStatus.TODO
    attempts: int = 0
    merge_sha: str | None = None
    # Short tail of the last failing run or merge conflict, handed back to the engineer.
    last_failure: str | None = None
    failure_reason: str | None = None
    # Files a role changed outside its territory in this attempt, which were put back.
    put_back: list[str] = Field(default_factory=list)
    # Why a role of this attempt stopped without finishing ("the tester did not finish: step limit ...").
    unfinished: list[str] = Field(default_factory=list)
    disputes: list[Dispute] = Field(default_factory=list)  # every dispute of the ticket, with its ruling


ProductKind = Literal["cli", "service", "library"]


class RunSpec(BaseModel):
    """How the released product is run and checked: the product manager's word, or a stack's default.

    A `cli` or `library` passes its smoke check when `command` exits 0 in the product's
    image, with no network; a `service` is started with `command` and passes when
    `http://HOST:port{health_path}` answers (below 400) from another container.
    """

    kind: ProductKind = "library"
    command: str = ""  # cli, library: the smoke command; service: the command that starts it
    port: int | None = Field(default=None, ge=1, le=65535)  # a service's
    health_path: str = "/"  # a service's health endpoint
    stack: str = "python"
    # True when the plan said nothing and the stack's default applies (for Python: import
    # every top-level package that is not a test, or without one every top-level module).
    default: bool = False


class PRD(BaseModel):
    """The product manager's plan: a document in the repo and the tickets it implies."""

    path: str  # "" when the product manager wrote none
    tickets: list[Ticket]
    run: RunSpec | None = None  # how the product runs (describe_product); None: the stack's default


class TestReport(BaseModel):
    """The orchestrator's verdict on one test run: its exit code and its machine-read report."""

    __test__ = False  # not a pytest test class

    ticket: str | None
    command: str
    exit_code: int
    passed: bool
    duration_s: float
    output_tail: str
    timed_out: bool = False
    event_id: str | None = None
    sha: str | None = None  # the commit whose tree was tested
    report_found: bool = False  # the runner wrote its JUnit XML report
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    passed_ids: list[str] = Field(default_factory=list)
    failed_ids: list[str] = Field(default_factory=list)  # tests that failed or errored, by name
    # Tests that passed in an earlier verdict and did not pass in this one.
    missing: list[str] = Field(default_factory=list)
    reason: str = ""  # why it did not pass, in one sentence


class SmokeCheck(BaseModel):
    """What the release's smoke check ran in the product's image, and how it ended.

    Its output's tail is in the transcript (the `smoke` event), not here.
    """

    kind: ProductKind
    command: str
    exit_code: int | None = None  # None: the process had not ended (a service, or a timeout)
    passed: bool = False
    timed_out: bool = False
    health_url: str | None = None  # a service's, as the probe asked for it
    default: bool = False  # the stack's default check: the plan did not say how the product runs
    duration_s: float = 0.0


class Package(BaseModel):
    """A third-party package a product uses: the wheel the orchestrator fetched and checked."""

    name: str
    version: str
    filename: str
    sha256: str
    url: str  # where it came from, without any userinfo


class Release(BaseModel):
    tag: str
    sha: str
    notes_path: str
    # The final suite's verdict on the tagged commit, and the hidden acceptance tests'.
    suite_tests: int = 0
    acceptance_passed: int | None = None
    acceptance_total: int | None = None
    previous_tag: str | None = None  # the release before this one: the notes cover what changed since
    image: str | None = None  # the product's image, name:tag, built from the tagged commit
    image_id: str | None = None
    dockerfile: str | None = None  # "Dockerfile" (the deployer's, checked) or "default" (the stack's)
    smoke: SmokeCheck | None = None
    stack: str = "python"
    packages: list[Package] = Field(default_factory=list)  # third-party packages in the image


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of prompt_tokens, those the provider served from its prompt cache (priced lower).
    cached_tokens: int = 0
    # Of completion_tokens, those spent on reasoning the answer does not show.
    reasoning_tokens: int = 0
    # True when the count was estimated (the scripted model, or an endpoint that sent
    # no usage) rather than reported.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
        )


class Budget(BaseModel):
    """Limits a run stops at (as paused, resumable with higher limits); None: no limit."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)  # active time, summed over sessions


class TreeLimits(BaseModel):
    """What one worktree may hold before host git is asked to read it."""

    model_config = ConfigDict(extra="forbid")

    max_files: int = Field(default=20_000, ge=1)
    max_bytes: int = Field(default=200 * 2**20, ge=1)
    max_file_bytes: int = Field(default=20 * 2**20, ge=1)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ApprovalDecision(BaseModel):
    """A person's answer at a gate: who, when, and why if rejected."""

    decision: Literal["approve", "reject"]
    comment: str = ""
    by: str = Field(default_factory=current_user)
    at: float = Field(default_factory=time.time)

"""The company graph's state: small on purpose (ids, statuses, counters, SHAs).

Logs, prompts and answers live in the transcript, not here, so checkpoints stay small.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from macrohard.models import Release, RunSpec, Ticket


def merge_tickets(current: dict[str, Ticket] | None, update: dict[str, Ticket | None] | None) -> dict[str, Ticket]:
    # Parallel ticket pipelines each report their own ticket; merge them by id. A new
    # plan drops the old plan's tickets by sending None for them.
    merged = {**(current or {}), **(update or {})}
    return {k: v for k, v in merged.items() if v is not None}


class CompanyState(TypedDict, total=False):
    tickets: Annotated[dict[str, Ticket], merge_tickets]
    plan_attempt: int  # plans written so far; a rejected plan is written again
    release_attempt: int
    run_spec: RunSpec  # how the product runs (the plan's describe_product, or the stack's default)
    version: str  # the release tag this run makes, chosen from the repository's tags when the deployer starts
    ship_failure: str  # why the last image build or smoke check failed, with its output: the deployer's next attempt sees it
    ship_failures: int  # image builds and smoke checks that failed so far (up to max_attempts)
    rejected: bool  # the last gate's answer, for the edge after it
    feedback: str  # the comment that came with a rejection, for the role that redoes its work
    release: Release
    status: str  # set by the last node: done, partial or failed
    failure: str
    integrated_sha: str  # main after the last integration: the final verdict may lose none of its tests
    judge_alone: bool  # in the judge's own input only: no ticket's roles run in its step


class TicketState(TypedDict, total=False):
    """One ticket pipeline's private state (engineer, tester, verdict)."""

    ticket: Ticket
    # Files the ticket names or its dependencies changed: the engineer's starting
    # context, which does not grow with the number of tickets already done.
    context_files: list[str]
    # Set when a role's worktree went over its limits and the attempt's work was dropped.
    lost: str
    # Set when the engineer changed nothing (and raised no dispute): no tester, no verdict.
    nothing: str
    tickets: Annotated[dict[str, Ticket], merge_tickets]


class TicketOutput(TypedDict, total=False):
    tickets: Annotated[dict[str, Ticket], merge_tickets]

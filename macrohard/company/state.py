"""The company graph's state: small on purpose (ids, statuses, counters, SHAs).

Logs, prompts and answers live in the transcript, not here, so checkpoints stay small.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from macrohard.models import Release, Ticket


def merge_tickets(current: dict[str, Ticket] | None, update: dict[str, Ticket] | None) -> dict[str, Ticket]:
    # Parallel ticket pipelines each report their own ticket; merge them by id.
    return {**(current or {}), **(update or {})}


class CompanyState(TypedDict, total=False):
    tickets: Annotated[dict[str, Ticket], merge_tickets]
    prd_sha: str
    release: Release
    status: str  # set by the last node: done, partial or failed
    failure: str


class TicketState(TypedDict, total=False):
    """One ticket pipeline's private state (engineer, tester, verdict)."""

    ticket: Ticket
    # Files the ticket names or its dependencies changed: the engineer's starting
    # context, which does not grow with the number of tickets already done.
    context_files: list[str]
    tickets: Annotated[dict[str, Ticket], merge_tickets]


class TicketOutput(TypedDict, total=False):
    tickets: Annotated[dict[str, Ticket], merge_tickets]

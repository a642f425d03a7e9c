"""Disputes at work: an engineer's claims that a test contradicts its ticket, the
tester's ruling, and the product manager's when the tester upholds the test.

The product manager's ruling stands: "change" fails the attempt without a verdict (the
disputed test would decide it) and tells the next attempt's tester to change the test;
"uphold" lets the verdict run on the test as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from macrohard.models import Dispute, Ticket
from macrohard.transcript.log import TranscriptLog


def dispute_maker(transcript: TranscriptLog, ticket: Ticket) -> Callable[[str, str], Dispute]:
    """Numbers the ticket's disputes and records each as it is made."""
    count = [len(ticket.disputes)]

    def make(test: str, reason: str) -> Dispute:
        count[0] += 1
        dispute = Dispute(id=f"D-{ticket.id}-{count[0]}", ticket=ticket.id, attempt=ticket.attempts, test=test, reason=reason)
        transcript.append("dispute", role="engineer", ticket=ticket.id, **dispute.model_dump(exclude={"ticket"}))
        return dispute

    return make


def ruling_recorder(transcript: TranscriptLog, role: str) -> Callable[[Dispute], None]:
    def record(dispute: Dispute) -> None:
        transcript.append("dispute.ruling", role=role, ticket=dispute.ticket, **dispute.model_dump(exclude={"ticket"}))

    return record


def merged(ticket: Ticket, ruled: list[Dispute]) -> Ticket:
    by_id = {d.id: d for d in ruled}
    return ticket.model_copy(update={"disputes": [by_id.get(d.id, d) for d in ticket.disputes]})


def open_for_tester(ticket: Ticket) -> list[Dispute]:
    return [d for d in ticket.disputes if d.attempt == ticket.attempts and d.ruling is None]


def for_product_manager(ticket: Ticket) -> list[Dispute]:
    """This attempt's disputes the tester did not agree to change: the product manager decides them."""
    return [d for d in ticket.disputes if d.attempt == ticket.attempts and (d.ruling != "change" or d.ruled_by is None)]


def overturned(ticket: Ticket) -> list[Dispute]:
    """This attempt's disputes the product manager ruled the test wrong on."""
    return [d for d in ticket.disputes
            if d.attempt == ticket.attempts and d.ruling == "change" and d.ruled_by == "product_manager"]


def describe(disputes: list[Dispute]) -> str:
    lines = []
    for d in disputes:
        ruling = f"; ruled {d.ruling} by the {d.ruled_by}: {d.ruling_reason}" if d.ruling else ""
        lines.append(f"- {d.id} (attempt {d.attempt}) on {d.test}: {d.reason}{ruling}")
    return "\n".join(lines)

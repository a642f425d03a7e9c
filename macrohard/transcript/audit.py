"""Audit views over a transcript: a timeline and totals by role and ticket.

They read only the transcript, so an audit shows what was recorded, nothing else.
Every event that counts towards the run's totals counts in exactly one row by role
and one row by ticket, so each table adds up to the total: what no role did (the
orchestrator starting and stopping sandboxes) is the orchestrator's, and what served
no ticket (planning, main's suite, the release) is in the "(no ticket)" row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from pydantic import BaseModel, Field, field_serializer

from macrohard.config import ModelPrice
from macrohard.transcript.describe import describe
from macrohard.transcript.log import Event

ROLELESS = "orchestrator"  # the row of events no role wrote
NO_TICKET = "(no ticket)"  # the row of events that served no ticket


def role_of(event: Event) -> str:
    return event.role or ROLELESS


def ticket_of(event: Event) -> str:
    return event.ticket or NO_TICKET


class Totals(BaseModel):
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_latency_s: float = 0.0
    tool_calls: int = 0
    tool_errors: int = 0
    sandbox_commands: int = 0
    sandbox_s: float = 0.0
    commits: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # model calls whose model has no price in the config

    @field_serializer("model_latency_s", "sandbox_s")
    def _seconds(self, value: float) -> float:
        return round(value, 3)  # sums of floats: 20.880000000000003 is noise

    @field_serializer("cost_usd")
    def _dollars(self, value: float) -> float:
        return round(value, 6)

    def add(self, event: Event, prices: Mapping[str, ModelPrice] | None = None) -> None:
        d = event.data
        if event.kind in ("model.response", "model.cut"):  # a cut call's estimated cost counts too
            usage = d.get("usage", {})
            self.model_calls += 1
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)
            self.model_latency_s += d.get("latency_s", 0.0)
            price = (prices or {}).get(str(d.get("model")))
            if price is None:
                self.unpriced_calls += 1
            else:
                self.cost_usd += price.cost(
                    usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), usage.get("cached_tokens", 0)
                )
        elif event.kind == "tool.call":
            self.tool_calls += 1
            self.tool_errors += 0 if d.get("ok") else 1
        elif event.kind == "sandbox.exec":
            self.sandbox_commands += 1
            self.sandbox_s += d.get("duration_s", 0.0)
        elif event.kind in ("sandbox.start", "sandbox.stop"):
            self.sandbox_s += d.get("duration_s", 0.0)
        elif event.kind == "git.commit":
            self.commits += 1


class TimelineEntry(BaseModel):
    id: str
    ts: float
    kind: str
    role: str | None
    ticket: str | None
    summary: str


class AuditReport(BaseModel):
    run_id: str | None
    events: int  # the events selected
    run_events: int = 0  # the events in the whole transcript
    started: float | None
    ended: float | None
    status: str | None  # how the run stands, from the whole transcript, whatever was selected
    totals: Totals = Field(default_factory=Totals)
    by_role: dict[str, Totals] = Field(default_factory=dict)
    by_ticket: dict[str, Totals] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class EventFilter(BaseModel):
    role: str | None = None  # "orchestrator" also matches the events no role wrote
    ticket: str | None = None  # "(no ticket)" matches the events that served none
    kind: str | None = None  # a kind or its prefix: "model" matches model.request and model.response
    since_s: float | None = None  # seconds after the run started
    until_s: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.model_dump(exclude_none=True))

    def shows_requests(self) -> bool:
        """Whether model.request events belong on the timeline: only when asked for by kind."""
        return self.kind in ("model", "model.request")

    def matches(self, event: Event, offset_s: float) -> bool:
        return not (
            (self.role is not None and role_of(event) != self.role)
            or (self.ticket is not None and ticket_of(event) != self.ticket)
            or (self.kind is not None and not (event.kind == self.kind or event.kind.startswith(self.kind + ".")))
            or (self.since_s is not None and offset_s < self.since_s)
            or (self.until_s is not None and offset_s > self.until_s)
        )

    def select(self, events: Iterable[Event]) -> Iterator[Event]:
        start: float | None = None
        for e in events:
            start = e.ts if start is None else start
            if self.matches(e, e.ts - start):
                yield e


# How each of these events leaves the run; a later one overrides an earlier one.
_STANDING = {"run.started": "unfinished", "run.resumed": "unfinished", "approval": "unfinished",
             "run.paused": "paused", "approval.requested": "awaiting_approval", "run.failed": "failed"}


def build_report(
    events: Iterable[Event], prices: Mapping[str, ModelPrice] | None = None, where: EventFilter | None = None
) -> AuditReport:
    """Totals and timeline of the events `where` selects (all by default); the run's facts from all of them."""
    prices = prices or {}
    where = where or EventFilter()
    report = AuditReport(run_id=None, events=0, started=None, ended=None, status=None)
    for event in events:
        report.run_events += 1
        report.run_id = report.run_id or event.run_id
        report.started = report.started if report.started is not None else event.ts
        report.ended = event.ts
        if event.kind == "run.finished":
            report.status = str(event.data.get("status"))
        elif event.kind in _STANDING:
            report.status = _STANDING[event.kind]
        if not where.matches(event, event.ts - report.started):
            continue
        report.events += 1
        report.totals.add(event, prices)
        report.by_role.setdefault(role_of(event), Totals()).add(event, prices)
        report.by_ticket.setdefault(ticket_of(event), Totals()).add(event, prices)
        if event.kind == "model.request" and not where.shows_requests():
            continue  # counted through its response; listed only when asked for
        report.timeline.append(
            TimelineEntry(id=event.id, ts=event.ts, kind=event.kind, role=event.role, ticket=event.ticket, summary=describe(event))
        )
    # The row of events that served no ticket comes last.
    if NO_TICKET in report.by_ticket:
        report.by_ticket[NO_TICKET] = report.by_ticket.pop(NO_TICKET)
    return report

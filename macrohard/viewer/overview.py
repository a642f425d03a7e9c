"""What a run's page shows, folded event by event: ticket board, totals with cost, timeline rows.

It is built incrementally so a live page can feed it new events as they are appended
instead of re-reading the whole transcript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from macrohard.config import ModelPrice
from macrohard.transcript.audit import NO_TICKET, Totals, role_of, ticket_of
from macrohard.transcript.describe import describe
from macrohard.transcript.log import Event
from macrohard.viewer.release import ReleaseCard

PriceTable = Mapping[str, ModelPrice]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("todo", "To do"),
    ("in_progress", "In progress"),
    ("passed", "Passed"),
    ("merged", "Merged"),
    ("failed", "Failed"),
    ("blocked", "Blocked"),
)
WORK_NODES = {"dispatch", "engineer", "tester"}
COMMIT_KINDS = {"git.commit", "git.merge", "git.tag"}


def price_table(prices: Mapping[str, tuple[float, float] | ModelPrice] | None) -> dict[str, ModelPrice]:
    """Prices by model name, from (prompt, completion) USD per million tokens or the config's ModelPrice."""
    table: dict[str, ModelPrice] = {}
    for model, price in (prices or {}).items():
        table[model] = price if isinstance(price, ModelPrice) else ModelPrice(input=price[0], output=price[1])
    return table


class Tally(Totals):
    """The audit's totals for one group, counted defensively."""

    def count(self, event: Event, prices: PriceTable) -> None:
        try:
            self.add(event, prices)
        except (AttributeError, TypeError):
            # A hand-edited event may hold a string where a number belongs; count the rest.
            return

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost_text(self, priced: bool) -> str:
        """Dollars, or a dash when nothing in this group has a price."""
        if not priced or self.model_calls == self.unpriced_calls:
            return "—"
        return f"${self.cost_usd:.4f}" + (" + unpriced" if self.unpriced_calls else "")


class TicketCard(BaseModel):
    id: str
    title: str = ""
    status: str = "todo"
    attempts: int = 0
    depends_on: list[str] = Field(default_factory=list)
    reason: str | None = None
    merge_sha: str | None = None
    last_event: str | None = None
    role: str = ""  # who works on it now, as the console's progress shows: engineer, tester, verdict
    step: int | None = None  # the model step that role is at


class Row(BaseModel):
    """One timeline line."""

    seq: int
    id: str
    ts: float
    offset_s: float
    kind: str
    role: str | None
    ticket: str | None
    summary: str
    sha: str | None = None  # commit events link straight to their diff
    unverified: bool = False  # at or after the point where the hash chain breaks


class TimelineFilter(BaseModel):
    role: str | None = None
    ticket: str | None = None
    kind: str | None = None  # a kind or its prefix, as `macrohard audit` takes it: "model" matches both model kinds

    def matches(self, event: Event) -> bool:
        # As the totals group them: "orchestrator" is also what no role did, "(no ticket)" what served none.
        return (
            (not self.role or role_of(event) == self.role)
            and (not self.ticket or ticket_of(event) == self.ticket)
            and (not self.kind or event.kind == self.kind or event.kind.startswith(self.kind + "."))
        )

    @property
    def active(self) -> bool:
        return bool(self.role or self.ticket or self.kind)


class Overview(BaseModel):
    """Board, totals and facets of one run, folded from its events in order."""

    priced: bool = False
    events: int = 0
    started: float | None = None
    ended: float | None = None
    status: str | None = None  # from run.finished / run.failed; None while running
    failure: str | None = None
    tickets: dict[str, TicketCard] = Field(default_factory=dict)
    total: Tally = Field(default_factory=Tally)
    by_role: dict[str, Tally] = Field(default_factory=dict)
    by_ticket: dict[str, Tally] = Field(default_factory=dict)
    roles: set[str] = Field(default_factory=set)
    kinds: set[str] = Field(default_factory=set)
    unpriced_models: set[str] = Field(default_factory=set)
    release: ReleaseCard = Field(default_factory=ReleaseCard)

    @property
    def finished(self) -> bool:
        return self.status is not None

    def fold(self, events: Iterable[Event], prices: PriceTable) -> None:
        for event in events:
            self.add(event, prices)

    def add(self, event: Event, prices: PriceTable) -> None:
        self.events += 1
        self.started = self.started if self.started is not None else event.ts
        self.ended = event.ts
        self.kinds.add(event.kind)
        self.roles.add(role_of(event))
        self.total.count(event, prices)
        if event.kind == "model.response" and str(event.data.get("model")) not in prices:
            self.unpriced_models.add(str(event.data.get("model")))
        # Every event in one row by role and one by ticket, so each table adds up to the total.
        self.by_role.setdefault(role_of(event), Tally()).count(event, prices)
        self.by_ticket.setdefault(ticket_of(event), Tally()).count(event, prices)
        self._board(event)
        self.release.add(event)
        if event.kind == "run.finished":
            self.status = str(event.data.get("status") or "finished")
            self.failure = _text(event.data.get("failure"))
        elif event.kind == "run.failed":
            self.status = "failed"
            self.failure = _text(event.data.get("error"))

    def _board(self, event: Event) -> None:
        d = event.data
        if event.kind == "plan":
            for t in d.get("tickets") or []:
                if isinstance(t, dict) and t.get("id"):
                    card = self.tickets.setdefault(str(t["id"]), TicketCard(id=str(t["id"])))
                    card.title = str(t.get("title") or "")
                    deps = t.get("depends_on")
                    card.depends_on = [str(x) for x in deps] if isinstance(deps, list) else []
            return
        if event.kind == "run.finished" and isinstance(d.get("tickets"), dict):
            # The run's own final word on each ticket settles anything the events left open.
            for tid, status in d["tickets"].items():
                self.tickets.setdefault(str(tid), TicketCard(id=str(tid))).status = str(status)
            return
        if not event.ticket:
            return
        card = self.tickets.setdefault(event.ticket, TicketCard(id=event.ticket))
        card.last_event = event.id
        match event.kind:
            case "node" if d.get("node") in WORK_NODES:
                card.status = "in_progress"
                card.role, card.step = (str(d["node"]), None) if d.get("node") != "dispatch" else ("", None)
                if d.get("node") == "engineer" and isinstance(d.get("attempt"), int):
                    card.attempts = d["attempt"]
            case "model.response" if event.role:
                card.role, card.step = event.role, d["step"] if isinstance(d.get("step"), int) else None
            case "verdict":
                card.status = "passed" if d.get("passed") else "in_progress"
                card.role, card.step = ("verdict", None) if not d.get("passed") else ("", None)
            case "merge.conflict":
                card.status, card.role, card.step = "todo", "", None
            case "main.suite" if not d.get("passed"):
                card.status, card.role, card.step = "todo", "", None
            case "git.merge":
                card.status, card.merge_sha, card.role, card.step = "merged", _text(d.get("sha")), "", None
            case "ticket.failed":
                card.status, card.reason, card.role, card.step = "failed", _text(d.get("reason")), "", None
            case "ticket.blocked":
                card.status, card.reason, card.role, card.step = "blocked", _text(d.get("reason")), "", None

    def role_rows(self) -> list[tuple[str, Tally]]:
        return sorted(self.by_role.items())

    def ticket_rows(self) -> list[tuple[str, Tally]]:
        return sorted(self.by_ticket.items(), key=lambda kv: ticket_order(kv[0]))

    def kind_options(self) -> list[tuple[str, str]]:
        """(value, label) for the kind filter: every kind, and each prefix that several kinds share."""
        prefixes = {k.split(".")[0] for k in self.kinds if "." in k}
        shared = {p for p in prefixes if sum(k.startswith(p + ".") for k in self.kinds) > 1}
        options = [(k, k) for k in self.kinds] + [(p, f"{p}.*") for p in shared - self.kinds]
        return sorted(options)

    def columns(self) -> list[tuple[str, str, list[TicketCard]]]:
        """(status, heading, cards) for every board column, cards in ticket order."""
        cards = sorted(self.tickets.values(), key=lambda c: ticket_order(c.id))
        known = {key for key, _ in COLUMNS}
        cols = [(key, title, [c for c in cards if c.status == key]) for key, title in COLUMNS]
        # A status this viewer does not know still gets shown, not dropped.
        for other in sorted({c.status for c in cards} - known):
            cols.append((other, other, [c for c in cards if c.status == other]))
        return cols


def summarize(event: Event) -> str:
    """One line saying what happened: the audit's wording."""
    return describe(event)


def row(event: Event, started: float | None, unverified: bool = False) -> Row:
    sha = event.data.get("sha") if event.kind in COMMIT_KINDS else None
    return Row(
        seq=event.seq, id=event.id, ts=event.ts, offset_s=event.ts - (started if started is not None else event.ts),
        kind=event.kind, role=event.role, ticket=event.ticket, summary=summarize(event),
        sha=sha if isinstance(sha, str) and sha else None,
        unverified=unverified,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def ticket_order(ticket_id: str) -> tuple[int, str]:
    if ticket_id == NO_TICKET:
        return (2**63, ticket_id)  # the row of what served no ticket comes last
    number = ticket_id.rsplit("-", 1)[-1]
    return (int(number) if number.isdigit() else 0, ticket_id)

"""What each page shows, assembled from a run folder; the templates only lay it out."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from pydantic import BaseModel, Field

from macrohard.company.run import RunRecord
from macrohard.transcript.audit import NO_TICKET
from macrohard.transcript.log import ChainBreak, Event, call_arguments
from macrohard.viewer.chart import BarChart, token_chart
from macrohard.viewer.gitread import Commit, CommitDiff, RepoReader
from macrohard.viewer.overview import (
    COMMIT_KINDS,
    Overview,
    PriceTable,
    Row,
    TimelineFilter,
    row,
    summarize,
    ticket_order,
)
from macrohard.viewer.prompt import (
    Conversation,
    PromptMessage,
    ToolCallView,
    caller_of,
    conversation,
    message_view,
    response_to,
    results_of,
    tool_call_view,
)
from macrohard.viewer.runs import RunFolder, Transcript, list_runs


class RunHead(BaseModel):
    """The facts at the top of every page of a run."""

    id: str
    title: str
    status: str
    model: str | None
    created: float | None
    ended: float | None
    live: bool
    events: int
    chain_break: ChainBreak | None
    bad_lines: list[int] = Field(default_factory=list)
    record_missing: bool = False
    failure: str | None = None  # why a failed run failed, in one line
    paused: str | None = None  # why a paused run paused
    awaiting: str | None = None  # the gate a run waits at


class RunLine(BaseModel):
    """One run in the list of runs."""

    head: RunHead
    tickets: int
    merged: int
    tokens: int


class RunPage(BaseModel):
    head: RunHead
    overview: Overview
    rows: list[Row]
    filter: TimelineFilter
    tickets: list[str]
    role_chart: BarChart
    ticket_chart: BarChart
    commits: list[Commit]
    last_seq: int


class Link(BaseModel):
    id: str
    kind: str
    label: str


class EventPage(BaseModel):
    head: RunHead
    event: Event
    unverified: bool
    raw: str
    conversation: Conversation | None = None
    answer: PromptMessage | None = None
    results: list[Event] = Field(default_factory=list)
    caller: Event | None = None
    tool_call: ToolCallView | None = None
    response: Event | None = None
    sandbox: Event | None = None
    commits: list[Commit] = Field(default_factory=list)
    refers_to: list[Link] = Field(default_factory=list)
    referenced_by: list[Link] = Field(default_factory=list)
    previous: str | None = None
    next: str | None = None
    cost: str = "—"


class CommitPage(BaseModel):
    head: RunHead
    diff: CommitDiff
    event_known: bool  # the trailer's event exists in this transcript
    other_run: str | None  # the trailer names another run
    recorded_by: list[Link]


def head_of(folder: RunFolder, transcript: Transcript, overview: Overview) -> RunHead:
    record = folder.record()
    started = next((e for e in transcript.events if e.kind == "run.started"), None)
    title = record.spec_title if record else str(started.data.get("spec_title", "")) if started else ""
    # The transcript's ending event is the fact; run.json speaks only when the transcript has none.
    status = overview.status or (record.status if record else "running")
    return RunHead(
        id=folder.id, title=title or "(untitled)", status=status, model=record.model if record else None,
        created=record.created_at if record else overview.started, ended=overview.ended if overview.finished else None,
        live=status == "running", events=len(transcript.events), chain_break=transcript.chain_break,
        bad_lines=transcript.bad_lines, record_missing=record is None,
        failure=failure_of(overview, record) if status == "failed" else None,
        paused=record.paused_reason if record and status == "paused" else None,
        awaiting=str((record.awaiting or {}).get("gate")) if record and record.awaiting and status == "awaiting_approval" else None,
    )


def failure_of(overview: Overview, record: RunRecord | None) -> str:
    """A failed run's reason on one line: the transcript's, else run.json's."""
    reason = overview.failure or (record.failure if record else None)
    return " ".join(str(reason).split()) if reason else "no reason was recorded"


def overview_of(transcript: Transcript, prices: PriceTable) -> Overview:
    overview = Overview(priced=bool(prices))
    overview.fold(transcript.events, prices)
    return overview


class RunIndex:
    """Lines of the run list, re-read only for runs whose files changed since last time."""

    def __init__(self, workspaces: Path, prices: PriceTable) -> None:
        self.workspaces = workspaces
        self.prices = prices
        self._cache: dict[str, tuple[tuple[int, ...], RunLine]] = {}
        self._lock = threading.Lock()

    def lines(self) -> list[RunLine]:
        found = []
        for folder in list_runs(self.workspaces):
            stamp = _stamp(folder)
            with self._lock:
                cached = self._cache.get(folder.id)
            if cached is None or cached[0] != stamp:
                cached = (stamp, self._line(folder))
                with self._lock:
                    self._cache[folder.id] = cached
            found.append(cached[1])
        return sorted(found, key=lambda line: (line.head.created or 0.0, line.head.id), reverse=True)

    def _line(self, folder: RunFolder) -> RunLine:
        transcript = folder.read_transcript()
        overview = overview_of(transcript, self.prices)
        return RunLine(
            head=head_of(folder, transcript, overview), tickets=len(overview.tickets),
            merged=sum(1 for t in overview.tickets.values() if t.status == "merged"), tokens=overview.total.tokens,
        )


def _stamp(folder: RunFolder) -> tuple[int, ...]:
    stamp: list[int] = []
    for path in (folder.transcript, folder.path / "run.json"):
        try:
            st = path.stat()
            stamp += [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp += [-1, -1]
    return tuple(stamp)


def run_page(folder: RunFolder, transcript: Transcript, prices: PriceTable, filt: TimelineFilter, root: str) -> RunPage:
    overview = overview_of(transcript, prices)
    started = overview.started
    rows = [row(e, started, transcript.unverified(i)) for i, e in enumerate(transcript.events) if filt.matches(e)]
    return RunPage(
        head=head_of(folder, transcript, overview), overview=overview, rows=rows, filter=filt,
        tickets=sorted({e.ticket or NO_TICKET for e in transcript.events}, key=ticket_order),
        commits=RepoReader(folder.repo).commits(), last_seq=transcript.events[-1].seq if transcript.events else 0,
        **charts(overview, folder.id, root),
    )


def charts(overview: Overview, run_id: str, root: str) -> dict[str, BarChart]:
    roles = dict(sorted(overview.by_role.items(), key=lambda kv: -kv[1].tokens))
    tickets = dict(overview.ticket_rows())
    empty = "No model calls yet." if not overview.finished else "No model calls."
    return {
        "role_chart": token_chart("Tokens by role", roles, lambda r: f"{root}/runs/{run_id}?{urlencode({'role': r})}", empty),
        "ticket_chart": token_chart("Tokens by ticket", tickets, lambda t: f"{root}/runs/{run_id}?{urlencode({'ticket': t})}",
                                    empty),
    }


def event_page(folder: RunFolder, transcript: Transcript, event: Event, prices: PriceTable) -> EventPage:
    events = transcript.events
    index = events.index(event)
    overview = overview_of(transcript, prices)
    page = EventPage(
        head=head_of(folder, transcript, overview), event=event, unverified=transcript.unverified(index),
        raw=json.dumps(event.model_dump(mode="json"), indent=2, ensure_ascii=False),
        previous=events[index - 1].id if index > 0 else None,
        next=events[index + 1].id if index + 1 < len(events) else None,
    )
    if event.kind in ("model.request", "model.response"):
        page.conversation = conversation(events, event)
    if event.kind == "model.response":
        page.answer = message_view(event.data.get("message"), event.id)
        page.results = results_of(events, event)
        single = Overview(priced=bool(prices))
        single.add(event, prices)
        page.cost = single.total.cost_text(bool(prices))
    elif event.kind == "model.request":
        page.response = response_to(events, event)
    elif event.kind == "tool.call":
        page.caller = caller_of(events, event)
        d = event.data
        arguments = call_arguments(event, transcript.by_id)
        page.tool_call = tool_call_view({"id": d.get("call_id"), "name": d.get("tool"), "arguments": arguments})
        page.sandbox = _sandbox_run(events, event, arguments)
    page.commits = [c for c in RepoReader(folder.repo).commits() if c.event_id == event.id]
    page.refers_to = [_link(e) for e in _referenced(events, event)]
    page.referenced_by = [_link(e) for e in events if event.id in _pointers(e)]
    return page


def commit_page(folder: RunFolder, transcript: Transcript, diff: CommitDiff, prices: PriceTable) -> CommitPage:
    overview = overview_of(transcript, prices)
    event_id = diff.commit.event_id
    run = diff.commit.trailers.get("Macrohard-Run")
    recorded = [e for e in transcript.events if e.kind in COMMIT_KINDS and e.data.get("sha") == diff.commit.sha]
    return CommitPage(
        head=head_of(folder, transcript, overview), diff=diff,
        event_known=event_id is not None and transcript.by_id(event_id) is not None,
        other_run=run if run is not None and run != folder.id else None,
        recorded_by=[_link(e) for e in recorded],
    )


def _pointers(event: Event) -> list[str]:
    """Ids of the events this one names as its cause or evidence."""
    return [v for k in ("cause", "event_id") if isinstance(v := event.data.get(k), str)]


def _referenced(events: Sequence[Event], event: Event) -> list[Event]:
    wanted = set(_pointers(event))
    return [e for e in events if e.id in wanted]


def _link(event: Event) -> Link:
    return Link(id=event.id, kind=event.kind, label=summarize(event))


def _sandbox_run(events: Sequence[Event], tool_event: Event, arguments: str) -> Event | None:
    """The sandbox.exec a run_shell call caused: same role and ticket, same command, just before it."""
    if tool_event.data.get("tool") != "run_shell":
        return None
    try:
        command = json.loads(arguments or "{}").get("command")
    except (json.JSONDecodeError, AttributeError):
        return None
    for event in reversed(events):
        if event.seq >= tool_event.seq or event.role != tool_event.role or event.ticket != tool_event.ticket:
            continue
        if event.kind == "model.response":
            return None  # back at the answer that asked for the call: it ran no command
        if event.kind == "sandbox.exec" and event.data.get("command") == command:
            return event
    return None

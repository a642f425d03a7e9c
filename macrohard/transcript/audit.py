"""Audit views over a transcript: a timeline and totals by role and ticket.

They read only the transcript, so an audit shows what was recorded, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from pydantic import BaseModel, Field

from macrohard.config import ModelPrice
from macrohard.transcript.log import Event


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
    events: int
    started: float | None
    ended: float | None
    status: str | None
    totals: Totals = Field(default_factory=Totals)
    by_role: dict[str, Totals] = Field(default_factory=dict)
    by_ticket: dict[str, Totals] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)


def describe(event: Event) -> str:
    """One line saying what happened."""
    d = event.data
    match event.kind:
        case "model.response":
            calls = [c["name"] for c in d.get("message", {}).get("tool_calls", [])]
            u = d.get("usage", {})
            what = f"calls {', '.join(calls)}" if calls else "answers"
            return f"step {d.get('step')}: {what} ({u.get('prompt_tokens', 0)}+{u.get('completion_tokens', 0)} tokens, {d.get('latency_s', 0):.2f}s)"
        case "tool.call":
            return f"{d.get('tool')} {'ok' if d.get('ok') else 'error'}: {str(d.get('result', ''))[:80]!r}"
        case "sandbox.exec":
            status = "timed out" if d.get("timed_out") else f"exit {d.get('exit_code')}"
            return f"$ {d.get('command')} -> {status} in {d.get('duration_s', 0):.2f}s"
        case "git.commit" | "git.merge":
            what = d.get("message") or ("" if d.get("sha") else d.get("detail", ""))
            return f"{str(d.get('sha') or '')[:10]} {what}".strip()
        case "verdict" | "main.suite" | "final.suite" | "acceptance":
            counts = f"{d.get('tests', 0)} tests, {d.get('failures', 0)} failed, {d.get('errors', 0)} errors, {d.get('skipped', 0)} skipped"
            why = f": {d['reason']}" if d.get("reason") else ""
            return f"{'pass' if d.get('passed') else 'FAIL'} ({counts}){why}"
        case "verdict.base":
            hollow = d.get("pass_on_base") or []
            return f"{len(d.get('new_tests') or [])} new tests on the base: " + (
                f"{len(hollow)} pass without the change" if hollow else "all fail without the change, as they must")
        case "territory.put_back":
            return f"put back outside {event.role}'s territory: {', '.join(d.get('files') or [])}"
        case "secret.refused":
            return f"refused a secret in: {', '.join(d.get('files') or {})}"
        case "worktree.scrubbed":
            return f"removed before host git ran: {', '.join(d.get('removed') or [])}"
        case "dispute" | "dispute.ruling":
            ruled = f" -> {d.get('ruling')} by {d.get('ruled_by')}" if event.kind == "dispute.ruling" else ""
            return f"{d.get('id')} on {d.get('test')}: {str(d.get('reason'))[:60]}{ruled}"
        case "node":
            return str(d.get("node"))
        case "run.finished":
            return f"status {d.get('status')}"
        case _:
            keys = ", ".join(f"{k}={str(v)[:40]}" for k, v in d.items() if k not in {"messages", "tickets"})
            return keys[:120]


class EventFilter(BaseModel):
    role: str | None = None
    ticket: str | None = None
    kind: str | None = None  # a kind or its prefix: "model" matches model.request and model.response
    since_s: float | None = None  # seconds after the run started
    until_s: float | None = None

    def select(self, events: Iterable[Event]) -> Iterator[Event]:
        start: float | None = None
        for e in events:
            start = e.ts if start is None else start
            offset = e.ts - start
            if self.role is not None and e.role != self.role:
                continue
            if self.ticket is not None and e.ticket != self.ticket:
                continue
            if self.kind is not None and not (e.kind == self.kind or e.kind.startswith(self.kind + ".")):
                continue
            if self.since_s is not None and offset < self.since_s:
                continue
            if self.until_s is not None and offset > self.until_s:
                continue
            yield e


def build_report(events: Iterable[Event], prices: Mapping[str, ModelPrice] | None = None) -> AuditReport:
    prices = prices or {}
    report = AuditReport(run_id=None, events=0, started=None, ended=None, status=None)
    for event in events:
        if event.kind == "model.request":
            # Counted via its response; the request adds nothing to a timeline line.
            report.events += 1
            continue
        report.events += 1
        report.run_id = report.run_id or event.run_id
        report.started = report.started or event.ts
        report.ended = event.ts
        if event.kind == "run.finished":
            report.status = event.data.get("status")
        report.totals.add(event, prices)
        if event.role:
            report.by_role.setdefault(event.role, Totals()).add(event, prices)
        if event.ticket:
            report.by_ticket.setdefault(event.ticket, Totals()).add(event, prices)
        report.timeline.append(
            TimelineEntry(id=event.id, ts=event.ts, kind=event.kind, role=event.role, ticket=event.ticket, summary=describe(event))
        )
    return report

"""A run's recorded model answers, read from its transcript and keyed by where each was asked.

A call is identified by (role, task, attempt, step): the role, its task (a ticket id,
`plan`, `release`), which session of that role on that task (the request's attempt) and
the step within the session (one answer per step). Not by the order of the calls: tickets
run in parallel and interleave differently every time. Not by what was sent: a replay
after a change to the orchestrator sends other prompts and tool results, and should still
get the answers. The key is what the scripted model finds its place by too, so a replay,
like a script, needs no memory of its own and a resumed replay finds the same answers.

The transcript records role, task and step on each model.request and model.response; the
attempt it does not, so it is read from the orchestrator's own events before each session's
first request, the way the company numbers sessions:

- engineer and tester: the `attempt` of the last `node` event of that name for the ticket;
- deployer (task `release`): the `attempt` of the last `deployer` node;
- product manager, task `plan`: the `attempt` of the last `product_manager` node, plus one
  after each `plan.unfinished` (planning tries another session within the same node);
- product manager on a ticket (arbitrating disputes): one more than the arbitrations of the
  ticket's earlier attempts.

When the same call was answered twice (a run resumed after a crash in mid-session asks
again), the later answer wins: it is the one the run went on with.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel

from macrohard.llm.base import Message
from macrohard.models import Usage
from macrohard.transcript.log import Event, read_events

PM = "product_manager"


class CallKey(NamedTuple):
    role: str
    task: str
    attempt: int
    step: int

    def describe(self) -> str:
        return f"{self.role}/{self.task} attempt {self.attempt} step {self.step}"


class RecordedAnswer(BaseModel):
    """One model.response: the answer as the model gave it, and what it cost."""

    event_id: str
    seq: int
    message: Message
    usage: Usage
    model: str
    served_model: str | None = None
    finish_reason: str | None = None


def _int(value: object, default: int = 1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class _Sessions:
    """Follows the orchestrator's events to know the attempt of each session as it starts."""

    def __init__(self) -> None:
        self.next_attempt: dict[tuple[str, str], int] = {}  # (role, task) -> the attempt its next session has
        self.current: dict[tuple[str, str], int] = {}  # (role, task) -> the attempt of the session under way
        self.arbitrations: dict[str, list[int]] = {}  # ticket -> the ticket attempts at each arbitrate node

    def saw(self, event: Event) -> None:
        d = event.data
        if event.kind == "node":
            node, ticket, attempt = d.get("node"), event.ticket, _int(d.get("attempt"))
            if node in ("engineer", "tester") and ticket:
                self.next_attempt[(str(node), ticket)] = attempt
            elif node == "deployer":
                self.next_attempt[("deployer", "release")] = attempt
            elif node == PM:
                self.next_attempt[(PM, "plan")] = attempt
            elif node == "arbitrate" and ticket:
                seen = self.arbitrations.setdefault(ticket, [])
                seen.append(attempt)
                self.next_attempt[(PM, ticket)] = 1 + sum(1 for a in seen if a != attempt)
        elif event.kind == "plan.unfinished":
            self.next_attempt[(PM, "plan")] = _int(d.get("attempt")) + 1
        elif event.kind == "model.request" and event.role:
            pair = (event.role, str(d.get("task", "")))
            if _int(d.get("step")) == 1:
                self.current[pair] = self.next_attempt.get(pair, 1)

    def key(self, event: Event) -> CallKey:
        task = str(event.data.get("task", ""))
        role = event.role or ""
        return CallKey(role, task, self.current.get((role, task), 1), _int(event.data.get("step")))


def answers_of(events: list[Event]) -> dict[CallKey, RecordedAnswer]:
    """Every recorded answer of these events (a transcript, in order), by where it was asked."""
    sessions = _Sessions()
    answers: dict[CallKey, RecordedAnswer] = {}
    for event in events:
        sessions.saw(event)
        if event.kind != "model.response" or not event.role:
            continue
        d = event.data
        answers[sessions.key(event)] = RecordedAnswer(
            event_id=event.id, seq=event.seq, message=Message.model_validate(d.get("message") or {"role": "assistant"}),
            usage=Usage.model_validate(d.get("usage") or {}), model=str(d.get("model") or ""),
            served_model=d.get("served_model"), finish_reason=d.get("finish_reason"),
        )
    return answers


def read_answers(transcript: Path, until_seq: int | None = None) -> dict[CallKey, RecordedAnswer]:
    """The answers recorded in a transcript, up to event number until_seq (all without it)."""
    events = [e for e in read_events(transcript) if until_seq is None or e.seq <= until_seq]
    return answers_of(events)

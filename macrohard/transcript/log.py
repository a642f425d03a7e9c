"""The run's transcript: an append-only JSONL file whose events are chained by hash.

Each event's hash covers its content and the previous event's hash, so editing,
removing, inserting or reordering any line breaks the chain from that point on.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from macrohard.errors import MacrohardError
from macrohard.redact import Redactor

GENESIS = "0" * 64


class Event(BaseModel):
    seq: int
    id: str
    ts: float
    run_id: str
    kind: str  # e.g. model.request, model.response, tool.call, sandbox.exec, git.commit, node
    role: str | None = None
    ticket: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str = ""

    def compute_hash(self) -> str:
        body = self.model_dump(exclude={"hash"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


Listener = Callable[[Event], None]


class TranscriptLog:
    """Append-only event log for one run; safe to append from parallel branches."""

    def __init__(self, path: Path, run_id: str, redactor: Redactor | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self.redactor = redactor or Redactor({})
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._seq, self._last_hash = self._tail()

    def _tail(self) -> tuple[int, str]:
        # A resumed run continues the chain where the file ends. Every append ends in
        # a newline, so a last line without one was torn by a killed process: nothing
        # hashed it into the chain, so it is cut off and `repaired_bytes` says so.
        self.repaired_bytes = 0
        if not self.path.exists():
            return 0, GENESIS
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) < len(data):
            self.repaired_bytes = len(data) - len(whole)
            with self.path.open("r+b") as f:
                f.truncate(len(whole))
        lines = whole.splitlines()
        last = next((line for line in reversed(lines) if line.strip()), None)
        if last is None:
            return 0, GENESIS
        try:
            event = Event.model_validate_json(last)
        except ValueError as e:
            raise MacrohardError(
                f"the last line of {self.path} is not a valid event", "check it with `macrohard audit RUN --verify`"
            ) from e
        return event.seq, event.hash

    @property
    def head(self) -> ChainHead | None:
        with self._lock:
            return ChainHead(seq=self._seq, hash=self._last_hash) if self._seq else None

    def events(self) -> list[Event]:
        """Every event so far, read while none is being written (the file may be appended to meanwhile)."""
        with self._lock:
            return list(read_events(self.path)) if self.path.exists() else []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def append(
        self,
        kind: str,
        *,
        role: str | None = None,
        ticket: str | None = None,
        **data: Any,
    ) -> Event:
        with self._lock:
            seq = self._seq + 1
            event = Event(
                seq=seq,
                id=f"ev-{seq:06d}",
                ts=time.time(),
                run_id=self.run_id,
                kind=kind,
                role=role,
                ticket=ticket,
                data=self.redactor.value(data),
                prev_hash=self._last_hash,
            )
            event.hash = event.compute_hash()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(event.model_dump_json() + "\n")
                f.flush()
            self._seq, self._last_hash = seq, event.hash
        for listener in self._listeners:
            listener(event)
        return event


    def notify(self, kind: str, *, role: str | None = None, ticket: str | None = None, **data: Any) -> None:
        """Tell the listeners (a live view) something passing, without writing it to the log."""
        if not self._listeners:
            return
        event = Event(seq=0, id="live", ts=time.time(), run_id=self.run_id, kind=kind, role=role, ticket=ticket,
                      data=self.redactor.value(data), prev_hash="")
        for listener in self._listeners:
            listener(event)


def read_events(path: Path) -> Iterator[Event]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Event.model_validate_json(line)


class ChainBreak(BaseModel):
    line: int  # 1-based line in transcript.jsonl
    event_id: str | None
    reason: str


class ChainHead(BaseModel):
    """Where a chain ended: stored apart from the transcript to catch truncation."""

    seq: int
    hash: str


def verify_chain(path: Path, anchor: ChainHead | None = None, *, final: bool = False) -> ChainBreak | None:
    """Return the first place the hash chain breaks, or None when it is intact.

    With an anchor, the event at the anchor's sequence must carry its hash, and when
    `final` it must also be the last event: nothing was cut off or appended.
    """
    prev = GENESIS
    expected_seq = 1
    seen: dict[int, str] = {}
    n = 0
    last: Event | None = None
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = Event.model_validate_json(line)
            except ValueError:
                return ChainBreak(line=n, event_id=None, reason="the line is not a valid event (edited)")
            if event.compute_hash() != event.hash:
                return ChainBreak(line=n, event_id=event.id, reason="its content does not match its hash (edited)")
            if event.seq > expected_seq:
                return ChainBreak(
                    line=n, event_id=event.id,
                    reason=f"events {expected_seq}..{event.seq - 1} before it are missing (removed)",
                )
            if event.seq < expected_seq:
                return ChainBreak(
                    line=n, event_id=event.id,
                    reason=f"sequence {event.seq} comes after {expected_seq - 1} (inserted or reordered)",
                )
            if event.prev_hash != prev:
                return ChainBreak(
                    line=n, event_id=event.id,
                    reason="it does not follow the previous event (an event before it was replaced)",
                )
            seen[event.seq] = event.hash
            prev, expected_seq, last = event.hash, expected_seq + 1, event
    if anchor is not None:
        if seen.get(anchor.seq) != anchor.hash:
            return ChainBreak(
                line=n + 1, event_id=f"ev-{anchor.seq:06d}",
                reason="the recorded head of the chain is not in the transcript (truncated or rewritten)",
            )
        if final and last is not None and last.seq != anchor.seq:
            return ChainBreak(line=n, event_id=last.id, reason="events were appended after the run finished")
    return None


def chain_head(path: Path) -> ChainHead | None:
    last: Event | None = None
    for last in read_events(path):
        pass
    return ChainHead(seq=last.seq, hash=last.hash) if last else None


# Tool arguments larger than this are stored once, in the model.response that carried
# them; the tool.call event refers to it (a 20 MB write_file is not kept twice).
INLINE_ARGUMENTS_CHARS = 2048


def call_arguments(event: Event, by_id: Callable[[str], Event | None]) -> str:
    """A tool.call event's arguments, inline or from the model answer they were stored in."""
    raw = event.data.get("arguments")
    if isinstance(raw, str):
        return raw
    ref = event.data.get("arguments_ref") or {}
    answer = by_id(str(ref.get("event", "")))
    calls = answer.data.get("message", {}).get("tool_calls", []) if answer is not None else []
    return next((str(c.get("arguments", "")) for c in calls if c.get("id") == event.data.get("call_id")), "")

"""Live updates: follow a growing transcript and push what is new as Server-Sent Events.

The tail reads only complete lines past the last offset, so a line the company is
still writing is picked up on the next poll, and checks the hash chain as it goes,
so a transcript tampered with while it is watched still raises the banner.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from macrohard.transcript.log import GENESIS, ChainBreak, Event
from macrohard.viewer.overview import Overview, PriceTable, Row, TimelineFilter, row
from macrohard.viewer.runs import RunFolder, parse_lines

HEARTBEAT_S = 15.0
# After run.finished the company still records its clean-up (sandboxes stopping) before it
# writes finished_at to run.json; the stream waits for that, or for this long a silence.
END_GRACE_S = 5.0


class Tail:
    """Follows one transcript, folding new events into an overview.

    The first poll reads the whole file the way a page does (verify_chain, with the
    run's recorded head); later polls read only what was appended and check that it
    continues the chain, with verify_chain's tests in verify_chain's order.
    """

    def __init__(self, folder: RunFolder, prices: PriceTable) -> None:
        self.folder = folder
        self.prices = prices
        self.overview = Overview(priced=bool(prices))
        self.offset = 0
        self.lines = 0
        self.chain_break: ChainBreak | None = None
        self._prev_hash = GENESIS
        self._next_seq = 1
        self._started = False

    def poll(self) -> list[tuple[Event, bool]]:
        """New events since the last poll, each with whether it falls after a chain break."""
        if not self._started:
            return self._first()
        try:
            with self.folder.transcript.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete:
            return []
        events, lines, bad = parse_lines(complete, first_line=self.lines + 1)
        self.offset += len(complete)
        self.lines += complete.count(b"\n")
        fresh: list[tuple[Event, bool]] = []
        for event, line in zip(events, lines, strict=True):
            self._not_an_event(bad, before=line)
            self._check(event, line)
            fresh.append(self._fold(event, line))
        self._not_an_event(bad, before=self.lines + 1)
        return fresh

    def _first(self) -> list[tuple[Event, bool]]:
        transcript = self.folder.read_transcript()
        self._started = True
        self.offset = transcript.size
        self.lines = transcript.line_count
        self.chain_break = transcript.chain_break
        if transcript.events:
            self._prev_hash, self._next_seq = transcript.events[-1].hash, transcript.events[-1].seq + 1
        return [self._fold(e, line) for e, line in zip(transcript.events, transcript.lines, strict=True)]

    def stopped(self) -> bool:
        """Whether the run's process has stopped writing (run.json says when it finished)."""
        record = self.folder.record()
        return bool(record and record.finished_at)

    def _fold(self, event: Event, line: int) -> tuple[Event, bool]:
        self.overview.add(event, self.prices)
        return event, self.chain_break is not None and line >= self.chain_break.line

    def _not_an_event(self, bad: list[int], before: int) -> None:
        earlier = [n for n in bad if n < before]
        if earlier and self.chain_break is None:
            self.chain_break = ChainBreak(line=min(earlier), event_id=None, reason="the line is not a valid event (edited)")

    def _check(self, event: Event, line: int) -> None:
        if self.chain_break is not None:
            return
        expected = self._next_seq
        if event.compute_hash() != event.hash:
            reason = "its content does not match its hash (edited)"
        elif event.seq > expected:
            reason = f"events {expected}..{event.seq - 1} before it are missing (removed)"
        elif event.seq < expected:
            reason = f"sequence {event.seq} comes after {expected - 1} (inserted or reordered)"
        elif event.prev_hash != self._prev_hash:
            reason = "it does not follow the previous event (an event before it was replaced)"
        else:
            self._prev_hash, self._next_seq = event.hash, expected + 1
            return
        self.chain_break = ChainBreak(line=line, event_id=event.id, reason=reason)


def sse(kind: str, payload: dict[str, Any], event_id: int | None = None) -> str:
    # JSON on one data line: model output may hold newlines or \r, which would end an SSE field.
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(payload)}\n\n"


async def stream(
    tail: Tail,
    after: int,
    filt: TimelineFilter,
    render_row: Callable[[Row], str],
    render_state: Callable[[Tail], Awaitable[dict[str, str]]],
    disconnected: Callable[[], Awaitable[bool]],
    poll_s: float,
) -> AsyncIterator[str]:
    """Rows after seq `after` that pass the filter, then every new one, until the run ends."""
    started: float | None = None
    last_sent = last_new = time.monotonic()
    first = True
    while True:
        # Asked before reading, so the read below has everything written before the run stopped.
        stopped = tail.overview.finished and await asyncio.to_thread(tail.stopped)
        fresh = await asyncio.to_thread(tail.poll)  # file reads and hashing stay off the event loop
        if fresh or first:
            started = tail.overview.started if started is None else started
            for event, unverified in fresh:
                if event.seq > after and filt.matches(event):
                    yield sse("row", {"seq": event.seq, "html": render_row(row(event, started, unverified))}, event.seq)
            yield sse("state", await render_state(tail))
            last_sent = last_new = time.monotonic()
            first = False
        if tail.overview.finished and (stopped or time.monotonic() - last_new > END_GRACE_S):
            yield sse("end", {"status": tail.overview.status})
            return
        if time.monotonic() - last_sent > HEARTBEAT_S:
            yield ": keep-alive\n\n"  # lets a dead connection show up as a failed write
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
        if await disconnected():
            return

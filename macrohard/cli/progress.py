"""Live progress, fed by transcript events: one row per ticket, updated as roles work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from macrohard.cli.show import clean, plain

from macrohard.transcript.describe import describe
from macrohard.transcript.log import Event

STATUS_STYLE = {"passed": "green", "merged": "bold green", "failed": "bold red", "blocked": "yellow", "conflict": "yellow"}


class ProgressView:
    """A live table in a terminal; one line per notable event elsewhere (CI, pipes)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.phase = "starting"
        self.rows: dict[str, dict[str, str]] = {}
        self.calls = 0
        self.tokens = 0
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while the user is asked something."""
        if self._live is None:
            yield
            return
        self._live.stop()
        try:
            yield
        finally:
            self._live.start()

    def _row(self, ticket: str) -> dict[str, str]:
        return self.rows.setdefault(ticket, {"title": "", "status": "todo", "role": "", "step": "", "attempt": "", "last": ""})

    def on_event(self, event: Event) -> None:
        line = self._apply(event)
        if line and self._live is None:
            self.console.print(clean(line), highlight=False, markup=False, soft_wrap=True)

    def _apply(self, event: Event) -> str | None:
        d, t = event.data, event.ticket
        with self._lock:
            if event.kind == "model.response":
                self.calls += 1
                self.tokens += d.get("usage", {}).get("prompt_tokens", 0) + d.get("usage", {}).get("completion_tokens", 0)
                if t:
                    row = self._row(t)
                    row["role"], row["step"] = event.role or "", str(d.get("step", ""))
                    calls = [c["name"] for c in d.get("message", {}).get("tool_calls", [])]
                    row["last"] = ", ".join(calls) or "answered"
                return None
            if event.kind == "model.streaming" and t:
                row = self._row(t)
                row["role"], row["step"] = event.role or "", str(d.get("step", ""))
                row["last"] = f"answering ({d.get('chars', 0)} characters so far)"
                return None
            if event.kind == "node":
                node = str(d.get("node"))
                if t is None:
                    self.phase = node
                    return f"[{self._clock()}] {node}"
                if node in ("dispatch", "integrate"):
                    self.phase = "building tickets" if node == "dispatch" else "integrating into main"
                row = self._row(t)
                row["role"] = node if node in ("engineer", "tester", "judge") else row["role"]
                row["status"] = "in progress" if node != "integrate" else "integrating"
                if "attempt" in d:
                    row["attempt"] = str(d["attempt"])
                return f"[{self._clock()}] {t} {node}" + (f" (attempt {d['attempt']})" if "attempt" in d else "")
            if event.kind == "plan":
                for ticket in d.get("tickets", []):
                    self._row(ticket["id"])["title"] = ticket["title"]
                return f"[{self._clock()}] plan: {len(d.get('tickets', []))} tickets"
            if event.kind == "verdict" and t:
                row = self._row(t)
                row["status"] = "passed" if d.get("passed") else "tests failed"
                counts = f"{d.get('tests', 0)} tests, {d.get('failures', 0)} failed, {d.get('errors', 0)} errors"
                row["role"], row["last"] = "verdict", d.get("reason") or counts
                why = f": {d['reason']}" if d.get("reason") else ""
                return f"[{self._clock()}] {t} verdict: {'pass' if d.get('passed') else 'FAIL'} ({counts}){why}"
            if event.kind == "territory.put_back":
                if t:
                    self._row(t)["last"] = f"put back {len(d.get('files', []))} files"
                where = f"{t} " if t else ""
                return f"[{self._clock()}] {where}{event.role}: put back outside its territory: {', '.join(d.get('files', []))}"
            if event.kind == "worktree.scrubbed":
                return f"[{self._clock()}] {t or 'main'}: removed {', '.join(d.get('removed', []))} before git ran"
            if event.kind == "git.merge" and t:
                self._row(t).update(status="merged", role="", last=str(d.get("sha") or "nothing new")[:10])
                return f"[{self._clock()}] {t} merged into main"
            if event.kind == "merge.conflict" and t:
                self._row(t).update(status="conflict", last=", ".join(d.get("conflicts", [])))
                return f"[{self._clock()}] {t} conflicts with main: {', '.join(d.get('conflicts', []))}"
            if event.kind in ("ticket.failed", "ticket.blocked") and t:
                status = event.kind.split(".")[1]
                self._row(t).update(status=status, role="", last=str(d.get("reason", "")))
                return f"[{self._clock()}] {t} {status}: {d.get('reason')}"
            if event.kind == "git.tag":
                return f"[{self._clock()}] tagged {d.get('tag')}"
            if event.kind in ("image.build", "image.refused", "smoke"):
                return f"[{self._clock()}] {describe(event)}"
            if event.kind in ("final.suite", "acceptance"):
                what = "final suite" if event.kind == "final.suite" else "hidden acceptance tests"
                result = "pass" if d.get("passed") else f"FAIL: {d.get('reason')}"
                tests = d.get("tests", 0)
                ok = tests - d.get("failures", 0) - d.get("errors", 0) - d.get("skipped", 0)
                return f"[{self._clock()}] {what}: {ok} of {tests} tests passed, {result}"
            if event.kind == "run.finished":
                self.phase = f"finished: {d.get('status')}"
            if event.kind in ("run.paused", "approval.requested", "approval", "run.resumed"):
                what = d.get("reason") or d.get("gate") or d.get("previous_status")
                extra = f" {d['decision']} by {d['by']}" if event.kind == "approval" else ""
                return f"[{self._clock()}] {event.kind}: {what}{extra}"
        return None

    def _clock(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"

    def render(self) -> RenderableType:
        with self._lock:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for col in ("ticket", "title", "status", "role", "attempt", "step", "last action"):
                table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=40 if col in ("title", "last action") else None)
            for tid, row in self.rows.items():
                status = Text(row["status"], style=STATUS_STYLE.get(row["status"], ""))
                table.add_row(plain(tid), plain(row["title"]), status, plain(row["role"]), row["attempt"], row["step"],
                              plain(row["last"]))
            header = Text(f"{self.phase}  ·  {self._clock().strip()}  ·  {self.calls} model calls, {self.tokens} tokens")
        return Group(header, table)

"""Run folders as the viewer sees them: found by validated id, read without trusting them.

Nothing here writes. Every path handed out is checked to resolve inside the
workspaces folder, so a crafted run id, or a symlink planted in a run folder,
cannot make the viewer read anything else.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from macrohard.company.run import RunRecord
from macrohard.transcript.log import ChainBreak, Event, verify_chain

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
EVENT_ID = re.compile(r"^ev-[0-9]{1,12}$")
TRANSCRIPT = "transcript.jsonl"
RUN_JSON = "run.json"
ENDING_KINDS = ("run.finished", "run.failed")


class NotFound(Exception):
    """Asked for a run, event or commit that does not exist (or may not be shown)."""


class Transcript(BaseModel):
    """The parsed events of one transcript, and whether its hash chain holds."""

    events: list[Event]
    lines: list[int]  # the 1-based line of each event in the file
    bad_lines: list[int]  # lines that are not events at all
    chain_break: ChainBreak | None
    size: int  # bytes of complete lines read: where a live tail continues
    line_count: int  # complete lines read, blank ones included

    @property
    def finished(self) -> bool:
        return any(e.kind in ENDING_KINDS for e in self.events)

    def by_id(self, event_id: str) -> Event | None:
        return next((e for e in self.events if e.id == event_id), None)

    def unverified(self, index: int) -> bool:
        """Whether events[index] sits at or after the point where the chain breaks."""
        return self.chain_break is not None and self.lines[index] >= self.chain_break.line


class RunFolder(BaseModel):
    """A validated run folder; the paths it hands out were checked to stay inside it."""

    id: str
    path: Path

    @property
    def transcript(self) -> Path:
        return self.path / TRANSCRIPT

    @property
    def repo(self) -> Path | None:
        """The product repository, or None when there is none (yet) or it leads outside."""
        repo = self.path / "repo"
        return repo if repo.is_dir() and _inside(self.path, repo) else None

    def record(self) -> RunRecord | None:
        """run.json, or None when it is missing or unreadable."""
        path = self.path / RUN_JSON
        if not _inside(self.path, path) or not path.is_file():
            return None
        try:
            return RunRecord.model_validate_json(path.read_bytes())
        except (ValidationError, OSError, ValueError):
            return None

    def read_transcript(self) -> Transcript:
        if not _inside(self.path, self.transcript) or not self.transcript.is_file():
            return Transcript(events=[], lines=[], bad_lines=[], chain_break=None, size=0, line_count=0)
        record = self.record()
        raw = self.transcript.read_bytes()
        # A line still being written has no newline yet: leave it for the next read.
        complete = raw[: raw.rfind(b"\n") + 1]
        events, lines, bad = parse_lines(complete, first_line=1)
        # Once a run has stopped, run.json holds the chain's head: that also catches a cut-off tail.
        anchor = record.transcript_head if record else None
        stopped = bool(record and record.finished_at)
        broken = verify_chain(self.transcript, anchor, final=stopped)
        if broken is not None and not stopped and broken.event_id is None and broken.line > complete.count(b"\n"):
            # An unparsable line past what was read above is one a running company is still writing;
            # if it is really broken, the next read, which includes it, says so.
            broken = None
        return Transcript(
            events=events, lines=lines, bad_lines=bad, chain_break=broken, size=len(complete),
            line_count=complete.count(b"\n"),
        )


def parse_lines(chunk: bytes, first_line: int) -> tuple[list[Event], list[int], list[int]]:
    """Events in a chunk of complete JSONL lines, their line numbers, and the lines that are not events."""
    events: list[Event] = []
    lines: list[int] = []
    bad: list[int] = []
    # split on b"\n" only: verify_chain counts lines the same way, so line numbers agree.
    for n, line in enumerate(chunk.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            events.append(Event.model_validate_json(line))
            lines.append(n)
        except ValueError:
            bad.append(n)
    return events, lines, bad


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def open_run(workspaces: Path, run_id: str) -> RunFolder:
    """The run folder named run_id, or NotFound for anything that is not one."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise NotFound(f"no run {run_id!r}")
    root = workspaces.resolve()
    path = (root / run_id).resolve()
    if path.parent != root or not path.is_dir():
        raise NotFound(f"no run {run_id!r}")
    if not (path / TRANSCRIPT).is_file() and not (path / RUN_JSON).is_file():
        raise NotFound(f"{run_id!r} is not a run folder")
    return RunFolder(id=run_id, path=path)


def list_runs(workspaces: Path) -> list[RunFolder]:
    """Every run folder directly inside workspaces, in no particular order."""
    if not workspaces.is_dir():
        return []
    found: list[RunFolder] = []
    for child in workspaces.iterdir():
        try:
            found.append(open_run(workspaces, child.name))
        except NotFound:
            continue
    return found

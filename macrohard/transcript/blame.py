"""Blame: from a line of the product back to the model answer that wrote it.

The chain is the one the Provenance section promises: ``git blame`` on main names
the commit that wrote a line, the commit's ``Macrohard-Event`` trailer names the
transcript event that caused it, and the transcript holds the tool call whose
arguments contain the line, the model answer that made that call, and every
message the model had been sent before it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
import posixpath
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from macrohard.errors import MacrohardError
from macrohard.transcript.log import Event, call_arguments, read_events
from macrohard.workspace.git import (
    EVENT_TRAILER,
    MAIN,
    ROLE_TRAILER,
    RUN_TRAILER,
    TICKET_TRAILER,
    GitWorkspace,
    parse_trailers,
)

WRITING_TOOLS = ("write_file", "edit_file")
# How the tools see a path given as absolute: see macrohard.agent.tools.Confined.
_SANDBOX_ROOT = "/workspace/"
_BLAME_HEADER = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64}) (\d+) (\d+)(?: (\d+))?$")


class BlameError(MacrohardError):
    """A blame question that the repository or the transcript cannot answer."""


class CommitRef(BaseModel):
    sha: str
    author: str
    role: str | None  # the Macrohard-Role trailer; None for commits made outside a run
    subject: str
    trailers: dict[str, str] = Field(default_factory=dict)


class EventRef(BaseModel):
    id: str
    kind: str
    role: str | None = None
    ticket: str | None = None


class AnswerRef(BaseModel):
    """A model.response event: the answer a model gave."""

    event_id: str
    role: str | None
    task: str | None
    step: int | None
    model: str | None
    content: str | None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class ToolCallRef(BaseModel):
    event_id: str  # the tool.call event
    call_id: str | None
    tool: str
    arguments: str  # raw JSON text, as the model sent it
    ok: bool


class TicketRef(BaseModel):
    id: str
    title: str | None = None


class FileCommit(BaseModel):
    """One commit that touched a file, for blame on a whole file."""

    commit: CommitRef
    event: EventRef | None
    ticket: TicketRef | None
    lines: list[int] = Field(default_factory=list)  # lines on main that this commit still owns


class BlameResult(BaseModel):
    run_id: str
    path: str
    line: int | None = None
    text: str | None = None
    commit: CommitRef | None = None
    event: EventRef | None = None  # named by the commit's Macrohard-Event trailer
    answer: AnswerRef | None = None
    # "tool_call": a write_file/edit_file call contains the line; "commit_cause": none
    # did, so the answer is the event the commit names.
    answer_source: Literal["tool_call", "commit_cause"] | None = None
    tool_call: ToolCallRef | None = None
    prompt_messages: list[dict[str, Any]] = Field(default_factory=list)
    ticket: TicketRef | None = None
    commits: list[FileCommit] = Field(default_factory=list)  # whole-file blame only


class _BlameLine(BaseModel):
    sha: str
    line: int
    text: str


def blame(run_dir: Path, path: str, line: int | None = None) -> BlameResult:
    """Trace a line of the product on main (or, without a line, a whole file) to its model answer."""
    run_dir = Path(run_dir)
    ws = GitWorkspace(run_dir)
    if not (ws.repo_dir / ".git").exists():
        raise BlameError(f"no product repository in {run_dir}", hint="pass a run folder, workspaces/<run-id>")
    transcript = run_dir / "transcript.jsonl"
    if not transcript.is_file():
        raise BlameError(f"no transcript at {transcript}", hint="pass a run folder, workspaces/<run-id>")
    events = list(read_events(transcript))
    run_id = events[0].run_id if events else run_dir.name
    rel = _repo_path(ws, path)
    lines = _blame_file(ws, rel)
    trace = _Transcript(events)

    if line is None:
        return BlameResult(run_id=run_id, path=rel, commits=_file_commits(ws, rel, lines, trace))

    if not 1 <= line <= len(lines):
        raise BlameError(
            f"{rel} has {len(lines)} lines on {MAIN}; there is no line {line}",
            hint=f"give a line from 1 to {len(lines)}" if lines else "the file is empty",
        )
    blamed = lines[line - 1]
    commit = _commit(ws, blamed.sha)
    event_id = commit.trailers.get(EVENT_TRAILER)
    if event_id is None:
        raise BlameError(
            f"line {line} of {rel} was written by commit {commit.sha[:12]} ({commit.subject}), "
            "which carries no Macrohard trailers",
            hint="it was made outside any model answer: the repository's initial commit, or one made by hand",
        )
    commit_run = commit.trailers.get(RUN_TRAILER)
    if commit_run is not None and commit_run != run_id:
        raise BlameError(
            f"commit {commit.sha[:12]} belongs to run {commit_run}, but {transcript} records run {run_id}",
            hint="blame it in that run's folder",
        )
    cause = trace.by_id.get(event_id)
    if cause is None:
        raise BlameError(
            f"commit {commit.sha[:12]} names event {event_id}, which is not in {transcript}",
            hint="the transcript is incomplete or was replaced; check its hash chain with verify_chain",
        )

    role = commit.trailers.get(ROLE_TRAILER)
    ticket_id = commit.trailers.get(TICKET_TRAILER)
    found = trace.writer_of(rel, blamed.text, role, ticket_id, cause)
    answer_event: Event | None
    call_event: Event | None
    if found is not None:
        answer_event, call_event = found
        source: Literal["tool_call", "commit_cause"] = "tool_call"
    else:
        answer_event = cause if cause.kind == "model.response" else None
        call_event = None
        source = "commit_cause"

    return BlameResult(
        run_id=run_id,
        path=rel,
        line=line,
        text=blamed.text,
        commit=commit,
        event=_event_ref(cause),
        answer=_answer_ref(answer_event) if answer_event else None,
        answer_source=source if answer_event else None,
        tool_call=_tool_call_ref(call_event, trace.by_id.get) if call_event else None,
        prompt_messages=trace.prompt_before(answer_event) if answer_event else [],
        ticket=trace.ticket(ticket_id),
    )


# -- git -----------------------------------------------------------------------


def _git(ws: GitWorkspace, *args: str) -> tuple[int, str]:
    # GitWorkspace is the one module that talks to git.
    return ws.query(*args)


def _repo_path(ws: GitWorkspace, path: str) -> str:
    """The path relative to the repo root, checked to be a file on main."""
    raw = path.strip()
    if not raw:
        raise BlameError("no path given", hint="give a file of the product, e.g. src/module.py")
    repo = ws.repo_dir.resolve()
    candidate = Path(raw)
    if candidate.is_absolute() and raw.startswith(_SANDBOX_ROOT):
        # How the sandbox and the tools name a file of the repository.
        raw = raw.removeprefix(_SANDBOX_ROOT)
    elif candidate.is_absolute():
        resolved = candidate.resolve()
        if resolved != repo and repo not in resolved.parents:
            raise BlameError(f"{path} is not inside the product repository {repo}",
                             hint="give a path relative to the repository root")
        raw = resolved.relative_to(repo).as_posix()
    rel = posixpath.normpath(raw.replace("\\", "/"))
    if rel in (".", "..") or rel.startswith("../"):
        raise BlameError(f"{path} is not a file inside the product repository", hint="give a path relative to its root")
    kind = _object_kind(ws, rel)
    if kind is None and not candidate.is_absolute():
        # A path typed from the shell's folder, e.g. workspaces/<run-id>/repo/src/x.py.
        from_cwd = candidate.resolve()
        if repo in from_cwd.parents:
            rel = from_cwd.relative_to(repo).as_posix()
            kind = _object_kind(ws, rel)
    if kind == "blob":
        return rel
    if kind == "tree":
        raise BlameError(f"{rel} is a directory on {MAIN}", hint="give one file inside it")
    _, listing = _git(ws, "ls-tree", "-r", "--name-only", MAIN)
    close = difflib.get_close_matches(rel, listing.splitlines(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"list the files with: git -C {repo} ls-files"
    raise BlameError(f"{rel} is not a file on {MAIN} in {repo}", hint=hint)


def _object_kind(ws: GitWorkspace, rel: str) -> str | None:
    status, kind = _git(ws, "cat-file", "-t", f"{MAIN}:{rel}")
    return kind.strip() if status == 0 else None


def _blame_file(ws: GitWorkspace, rel: str) -> list[_BlameLine]:
    status, out = _git(ws, "blame", "--porcelain", MAIN, "--", rel)
    if status != 0:
        raise BlameError(f"git blame failed for {rel}", hint=f"inspect the repository {ws.repo_dir}")
    lines: list[_BlameLine] = []
    sha: str | None = None
    final = 0
    for raw in out.split("\n"):
        if raw.startswith("\t"):
            if sha is not None:
                lines.append(_BlameLine(sha=sha, line=final, text=raw[1:]))
            continue
        header = _BLAME_HEADER.match(raw)
        if header:
            sha, final = header.group(1), int(header.group(3))
    return lines


def _commit(ws: GitWorkspace, sha: str) -> CommitRef:
    status, out = _git(ws, "log", "-1", "--format=%H%n%an%n%B", sha)
    if status != 0:
        raise BlameError(f"commit {sha[:12]} cannot be read", hint=f"inspect the repository {ws.repo_dir}")
    full, author, message = (out.split("\n", 2) + ["", ""])[:3]
    trailers = parse_trailers(message)
    subject = next((part.strip() for part in message.splitlines() if part.strip()), "")
    return CommitRef(sha=full.strip(), author=author, role=trailers.get(ROLE_TRAILER), subject=subject,
                     trailers=trailers)


def _file_commits(ws: GitWorkspace, rel: str, lines: list[_BlameLine], trace: _Transcript) -> list[FileCommit]:
    # Merges are left out: git blame credits their lines to the commits they merged.
    _, out = _git(ws, "log", MAIN, "--no-merges", "--format=%H", "--", rel)
    shas = [s.strip() for s in out.splitlines() if s.strip()]
    owned: dict[str, list[int]] = {}
    for entry in lines:
        owned.setdefault(entry.sha, []).append(entry.line)
    # A merge that changed lines itself (a hand-made conflict resolution) still owns them.
    shas += [sha for sha in owned if sha not in shas]
    result: list[FileCommit] = []
    for sha in shas:
        commit = _commit(ws, sha)
        cause = trace.by_id.get(commit.trailers.get(EVENT_TRAILER, ""))
        result.append(
            FileCommit(
                commit=commit,
                event=_event_ref(cause) if cause else None,
                ticket=trace.ticket(commit.trailers.get(TICKET_TRAILER)),
                lines=owned.get(sha, []),
            )
        )
    return result


# -- transcript ----------------------------------------------------------------


class _Transcript:
    """Lookups over a run's events, in transcript order."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.by_id = {e.id: e for e in events}
        self._pos = {e.id: i for i, e in enumerate(events)}

    def writer_of(
        self, path: str, text: str, role: str | None, ticket: str | None, cause: Event
    ) -> tuple[Event, Event] | None:
        """The (model.response, tool.call) that wrote text into path, before the commit's cause."""
        end = self._pos[cause.id]
        start = 0
        # Lines in this commit were written after the role's previous commit on the ticket;
        # anything older would have been blamed on that commit instead.
        for i in range(end - 1, -1, -1):
            e = self.events[i]
            if e.kind == "git.commit" and e.role == role and e.ticket == ticket:
                start = i + 1
                break
        calls = [
            e for e in reversed(self.events[start:end])
            if e.kind == "tool.call" and e.role == role and e.ticket == ticket
            and e.data.get("tool") in WRITING_TOOLS and e.data.get("ok", True)
        ]
        # An exact line beats a fragment of one; within each, the newest write wins.
        for strict in (True, False):
            for call in calls:
                args = _arguments(call_arguments(call, self.by_id.get))
                if _tool_path(args.get("path")) != path:
                    continue
                if _writes(call.data["tool"], args, text, strict=strict):
                    answer = self._answer_for(call)
                    if answer is not None:
                        return answer, call
        return None

    def _answer_for(self, call: Event) -> Event | None:
        """The model.response that asked for this tool call."""
        call_id = call.data.get("call_id")
        task = call.data.get("task")
        for i in range(self._pos[call.id] - 1, -1, -1):
            e = self.events[i]
            if e.kind != "model.response" or e.role != call.role or e.ticket != call.ticket:
                continue
            if e.data.get("task") != task:
                continue
            ids = [c.get("id") for c in e.data.get("message", {}).get("tool_calls", [])]
            if call_id in ids:
                return e
        return None

    def prompt_before(self, answer: Event) -> list[dict[str, Any]]:
        """Every message the model had been sent when it gave this answer.

        Each model.request records only the messages added since the previous one;
        the model's own earlier answers are in the model.response events between them.
        """
        task = answer.data.get("task")
        chunks: list[list[dict[str, Any]]] = []
        for i in range(self._pos[answer.id] - 1, -1, -1):
            e = self.events[i]
            if e.role != answer.role or e.ticket != answer.ticket or e.data.get("task") != task:
                continue
            if e.kind == "model.response":
                chunks.append([dict(e.data.get("message", {}))])
            elif e.kind == "model.request":
                chunks.append([dict(m) for m in e.data.get("messages", [])])
                # Step 1 starts a conversation: earlier attempts at the task are other prompts.
                if e.data.get("step") == 1:
                    break
        return [m for chunk in reversed(chunks) for m in chunk]

    def ticket(self, ticket_id: str | None) -> TicketRef | None:
        if ticket_id is None:
            return None
        title: str | None = None
        for e in self.events:
            if e.kind == "plan":
                for t in e.data.get("tickets", []):
                    if t.get("id") == ticket_id:
                        title = t.get("title")
        return TicketRef(id=ticket_id, title=title)


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_path(raw: Any) -> str | None:
    if not isinstance(raw, str) or not raw:
        return None
    return posixpath.normpath(raw.removeprefix(_SANDBOX_ROOT))


def _writes(tool: str, args: dict[str, Any], text: str, *, strict: bool) -> bool:
    """Whether this write_file/edit_file call put `text` on a line of the file."""
    if tool == "write_file":
        content = args.get("content")
        if not isinstance(content, str):
            return False
        # write_file stores content verbatim, so its lines are the file's lines.
        return strict and text in content.splitlines()
    new = args.get("new")
    if not isinstance(new, str):
        return False
    # `new` replaces text in the middle of the file: its first piece is preceded by
    # what stood before `old` on that line, its last piece followed by what came after.
    pieces = new.split("\n")
    if len(pieces) == 1:
        piece = pieces[0]
        if strict:
            return bool(text.strip()) and piece.strip() == text.strip()
        return bool(piece.strip()) and piece in text
    if text in pieces[1:-1]:
        return True
    first, last = pieces[0], pieces[-1]
    if strict:
        return bool(text.strip()) and text.strip() in (first.strip(), last.strip())
    return (bool(first.strip()) and text.endswith(first)) or (bool(last.strip()) and text.startswith(last))


def _event_ref(e: Event) -> EventRef:
    return EventRef(id=e.id, kind=e.kind, role=e.role, ticket=e.ticket)


def _answer_ref(e: Event) -> AnswerRef:
    message = e.data.get("message", {})
    return AnswerRef(
        event_id=e.id,
        role=e.role,
        task=e.data.get("task"),
        step=e.data.get("step"),
        model=e.data.get("model"),
        content=message.get("content"),
        tool_calls=list(message.get("tool_calls", [])),
    )


def _tool_call_ref(e: Event, by_id: Callable[[str], Event | None]) -> ToolCallRef:
    return ToolCallRef(
        event_id=e.id,
        call_id=e.data.get("call_id"),
        tool=str(e.data.get("tool")),
        arguments=call_arguments(e, by_id),
        ok=bool(e.data.get("ok", True)),
    )


# -- rendering -----------------------------------------------------------------

_SNIPPET = 160


def _one_line(text: str | None, limit: int = _SNIPPET) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _clip(text: str, limit: int) -> str:
    # Arguments are JSON text: keep their spacing, only fold line breaks.
    flat = text.replace("\r", "").replace("\n", "\\n")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _ranges(numbers: list[int]) -> str:
    spans: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if spans and spans[-1][1] == n - 1:
            spans[-1] = (spans[-1][0], n)
        else:
            spans.append((n, n))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def _message_line(m: dict[str, Any]) -> str:
    role = m.get("role", "?")
    if role == "tool":
        return f"  [tool {m.get('tool_call_id', '')}] {_one_line(m.get('content'))}"
    calls = m.get("tool_calls") or []
    text = _one_line(m.get("content"))
    if calls:
        called = ", ".join(f"{c.get('name')}({_clip(c.get('arguments') or '', 80)})" for c in calls)
        text = f"{text} -> {called}" if text else f"-> {called}"
    return f"  [{role}] {text}"


def render_blame(result: BlameResult) -> str:
    """Plain text for a terminal: the line, its commit, ticket, answer, tool call and prompt."""
    out: list[str] = []
    if result.line is None:
        count = len(result.commits)
        out.append(f"{result.path} (run {result.run_id}): {count} commit{'' if count == 1 else 's'}")
        for fc in result.commits:
            c = fc.commit
            who = c.role or c.author
            out.append(f"  {c.sha[:12]}  {who:<16} {c.subject}")
            details = []
            if fc.ticket:
                details.append(f"ticket {fc.ticket.id}" + (f" ({fc.ticket.title})" if fc.ticket.title else ""))
            if fc.event:
                details.append(f"event {fc.event.id} ({fc.event.kind})")
            details.append(f"lines {_ranges(fc.lines)}" if fc.lines else "no line left on main")
            out.append("                " + "; ".join(details))
        return "\n".join(out)

    out.append(f"{result.path}:{result.line} (run {result.run_id})")
    out.append(f"    {result.text}")
    out.append("")
    if result.commit:
        c = result.commit
        out.append(f"commit     {c.sha[:12]} by {c.role or c.author}: {c.subject}")
        for key, value in c.trailers.items():
            out.append(f"           {key}: {value}")
    if result.ticket:
        title = f" {result.ticket.title}" if result.ticket.title else ""
        out.append(f"ticket     {result.ticket.id}{title}")
    if result.event:
        out.append(f"cause      {result.event.id} ({result.event.kind}), named by the commit")
    if result.answer:
        a = result.answer
        how = "wrote the line" if result.answer_source == "tool_call" else "the commit's cause; no write_file/edit_file call contains the line"
        out.append(f"answer     {a.event_id} ({how})")
        out.append(f"           {a.role}, task {a.task}, step {a.step}, model {a.model}")
        if a.content:
            out.append(f"           says: {_one_line(a.content)}")
        if a.tool_calls:
            out.append("           calls: " + ", ".join(f"{t.get('name')} {t.get('id')}" for t in a.tool_calls))
    else:
        out.append("answer     none: the commit's cause is not a model answer")
    if result.tool_call:
        t = result.tool_call
        out.append(f"tool call  {t.tool} {t.call_id} ({t.event_id})")
        out.append(f"           {_clip(t.arguments, 400)}")
    if result.prompt_messages:
        out.append(f"prompt     {len(result.prompt_messages)} messages before the answer")
        out.extend(_message_line(m) for m in result.prompt_messages)
    return "\n".join(out)

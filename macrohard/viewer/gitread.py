"""Read-only git for the viewer: commits with their trailers, and one commit's diff.

The product repository is written by the run; the viewer only ever runs `git log`,
`git show` and `git rev-parse` on it, through the workspace adapter (the one module
that runs git), with external diff and textconv drivers off so nothing configured in
the repository runs a program.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from macrohard.errors import WorkspaceError
from macrohard.workspace.git import EVENT_TRAILER, GitWorkspace, parse_trailers

SHA = re.compile(r"^[0-9a-f]{4,64}$")
MAX_DIFF_BYTES = 1_000_000
MAX_COMMITS = 1000
_FIELD = "\x1f"


class Commit(BaseModel):
    sha: str
    parents: list[str]
    author: str
    author_email: str
    time: float
    subject: str
    message: str
    trailers: dict[str, str] = Field(default_factory=dict)

    @property
    def event_id(self) -> str | None:
        return self.trailers.get(EVENT_TRAILER)

    @property
    def body(self) -> str:
        """The message between its subject and its trailers."""
        paragraphs = [p for p in re.split(r"\n[ \t]*\n", self.message) if p.strip()]
        return "\n\n".join(paragraphs[1 : -1 if self.trailers else None]).strip()


class DiffLine(BaseModel):
    kind: Literal["add", "del", "hunk", "meta", "ctx"]
    text: str


class FileDiff(BaseModel):
    path: str
    added: int | None = None  # None for binary files
    deleted: int | None = None
    lines: list[DiffLine] = Field(default_factory=list)


class CommitDiff(BaseModel):
    commit: Commit
    files: list[FileDiff]
    truncated: bool


MAX_OUTPUT_BYTES = 4_000_000  # what the viewer reads of any git command


def _own_repository(repo: Path) -> bool:
    """repo/.git is a real folder inside the run, not a link or a `gitdir:` file naming another repository."""
    dot = repo / ".git"
    run = repo.parent.resolve()
    return (not repo.is_symlink() and not dot.is_symlink() and dot.is_dir()
            and run in dot.resolve().parents)


class GitReadError(Exception):
    """git could not be asked (no repository yet, or git failed)."""


class RepoReader:
    """Reads one repository; with no repository (None) it has no commits."""

    def __init__(self, repo: Path | None) -> None:
        self.repo = repo

    def _git(self, *args: str, limit: int = MAX_OUTPUT_BYTES) -> str:
        if self.repo is None or not _own_repository(self.repo):
            raise GitReadError(f"no repository of this run at {self.repo}")
        try:
            status, out, _ = GitWorkspace(self.repo.parent).query_capped("-c", "core.quotePath=false", *args, limit=limit)
        except WorkspaceError as e:
            raise GitReadError(str(e)) from e
        if status != 0:
            raise GitReadError(f"git {args[0]} failed in {self.repo}")
        return out

    def commits(self) -> list[Commit]:
        """Commits on every branch and tag, newest first."""
        try:
            out = self._git("log", "--all", "--date-order", f"--max-count={MAX_COMMITS}", "-z", _FORMAT)
        except GitReadError:
            return []
        return [_commit(record) for record in out.split("\x00") if record.strip()]

    def resolve(self, sha: str) -> str | None:
        """The full sha of the commit `sha` names, or None when it is not one."""
        if not SHA.fullmatch(sha):
            return None
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}").strip() or None
        except GitReadError:
            return None

    def commit(self, sha: str) -> Commit | None:
        full = self.resolve(sha)
        if full is None:
            return None
        try:
            return _commit(self._git("show", "-s", "-z", _FORMAT, full, "--").rstrip("\x00"))
        except GitReadError:
            return None

    def diff(self, sha: str) -> CommitDiff | None:
        """A commit's change against its first parent (everything, for the first commit)."""
        commit = self.commit(sha)
        if commit is None:
            return None
        common = ("show", "--no-ext-diff", "--no-textconv", "--no-color", "-m", "--first-parent", "-M", "--format=")
        stats = self._git(*common, "--numstat", "-z", commit.sha, "--")
        patch = self._git(*common, "--patch", commit.sha, "--", limit=MAX_DIFF_BYTES + 1)
        truncated = len(patch.encode()) > MAX_DIFF_BYTES
        files = _parse_patch(patch)
        _add_stats(files, stats)
        return CommitDiff(commit=commit, files=files, truncated=truncated)


_FORMAT = "--format=" + _FIELD.join(["%H", "%P", "%an", "%ae", "%at", "%B"])


def _commit(record: str) -> Commit:
    sha, parents, author, email, at, message = (record.lstrip("\n").split(_FIELD, 5) + [""] * 6)[:6]
    return Commit(
        sha=sha, parents=parents.split(), author=author, author_email=email,
        time=float(at) if at.strip().isdigit() else 0.0, subject=message.strip().split("\n", 1)[0],
        message=message.strip(), trailers=parse_trailers(message),
    )


def _parse_patch(patch: str) -> list[FileDiff]:
    files: list[FileDiff] = []
    current: FileDiff | None = None
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            current = FileDiff(path=_path_of(line))
            files.append(current)
            continue
        if current is None:
            continue
        if line.startswith("@@"):
            kind = "hunk"
        elif line.startswith(("+++ ", "--- ")) and not any(d.kind == "hunk" for d in current.lines):
            kind = "meta"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith(" ") or line == "":
            kind = "ctx"
        else:
            kind = "meta"  # index, mode, rename and "\ No newline" lines
        current.lines.append(DiffLine(kind=kind, text=line))
    return files


def _path_of(header: str) -> str:
    # "diff --git a/x b/x": the b/ side names the file as it is after the commit.
    rest = header[len("diff --git "):]
    marker = rest.rfind(" b/")
    return rest[marker + 3:] if marker >= 0 else rest


def _add_stats(files: list[FileDiff], numstat: str) -> None:
    # -z numstat: "added\tdeleted\tpath\0", or for renames "added\tdeleted\t\0old\0new\0".
    parts = numstat.split("\x00")
    by_path = {f.path: f for f in files}
    i = 0
    while i < len(parts):
        fields = parts[i].strip("\n").split("\t")
        i += 1
        if len(fields) != 3:
            continue
        added, deleted, path = fields
        if not path and i + 1 < len(parts):
            path = parts[i + 1]
            i += 2
        target = by_path.get(path)
        if target is not None:
            target.added = int(added) if added.isdigit() else None
            target.deleted = int(deleted) if deleted.isdigit() else None

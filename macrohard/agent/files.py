"""File tools on one confined worktree: list, read (by line range), write (in parts), edit.

Paths are resolved and opened by `Confined` (agent/confined.py): no path may leave the root.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import BinaryIO

from pydantic import BaseModel, Field

from macrohard.agent.base import ToolError
from macrohard.agent.confined import Confined

MAX_WRITE_BYTES = 2 * 2**20  # one file written by hand (in one call or in parts): larger ones are not
MAX_EDIT_BYTES = MAX_WRITE_BYTES
MAX_LIST_ENTRIES = 500
# One read shows at most this much text; the rest is read on by line range. Below the
# loop's cap on a tool result, so the loop never cuts the middle out of a read.
MAX_READ_CHARS = 10_000
# Lines are counted in this much of a file; a larger one is still read in ranges.
MAX_SCAN_BYTES = 16 * 2**20
_CHUNK = 64 * 1024


class FileTool:
    """A tool that works on files inside one confined root."""

    def __init__(self, fs: Confined) -> None:
        self.fs = fs


class ListFiles(FileTool):
    name = "list_files"
    description = "List files under a directory of the workspace, recursively."

    class Args(BaseModel):
        path: str = Field(".", description="directory relative to the workspace root")

    def run(self, args: Args) -> str:
        found = list(itertools.islice(self.fs.files(args.path), MAX_LIST_ENTRIES + 1))
        if len(found) > MAX_LIST_ENTRIES:
            return "\n".join(found[:MAX_LIST_ENTRIES]) + f"\n... more than {MAX_LIST_ENTRIES} files"
        return "\n".join(found) or "(no files)"


class _Lines:
    """The lines of an open file, each cut to what one read can show, up to MAX_SCAN_BYTES."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.complete = True  # False when the file goes on past MAX_SCAN_BYTES

    def __iter__(self) -> Iterator[bytes]:
        scanned = 0
        head = b""
        while True:
            if scanned >= MAX_SCAN_BYTES:
                self.complete = not self.f.read(1)
                break
            chunk = self.f.readline(_CHUNK)
            if not chunk:
                break
            scanned += len(chunk)
            if len(head) <= MAX_READ_CHARS:  # a longer line is shown cut: keep no more of it
                head = (head + chunk)[: MAX_READ_CHARS + 1]
            if chunk.endswith(b"\n"):
                yield head
                head = b""
        if head:
            yield head


def _plural(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


class ReadFile(FileTool):
    name = "read_file"
    description = (
        "Read a text file of the workspace. The answer's first line says which lines are shown and how many the "
        "file has, e.g. [app.py: lines 1-240 of 900]; then the text exactly as in the file, without line numbers. "
        f"About {MAX_READ_CHARS} characters are shown at a time: read a long file on with `start` (and `end`)."
    )

    class Args(BaseModel):
        path: str = Field(description="file path relative to the workspace root")
        start: int | None = Field(None, ge=1, description="first line to show, counting from 1 (default 1)")
        end: int | None = Field(None, ge=1, description="last line to show, inclusive (default: as many as fit)")

    def run(self, args: Args) -> str:
        start, end = args.start or 1, args.end
        if end is not None and end < start:
            raise ToolError(f"end ({end}) is before start ({start})")
        fd, shown = self.fs.open(args.path)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            lines = _Lines(f)
            picked: list[str] = []
            used = total = 0
            unshown: int | None = None  # the first line of the range that did not fit
            cut: int | None = None  # a line too long to show whole
            for total, raw in enumerate(lines, 1):
                if total < start or (end is not None and total > end) or unshown is not None:
                    continue
                text = raw.decode("utf-8", errors="replace")
                if used + len(text) > MAX_READ_CHARS:
                    if picked:
                        unshown = total
                        continue
                    text, cut = text[:MAX_READ_CHARS].rstrip("\n") + "\n", total
                picked.append(text)
                used += len(text)
        if total == 0:
            return f"[{shown}: empty]"
        scanned = f" (the file is {size} bytes; lines are counted in its first {MAX_SCAN_BYTES // 2**20} MB)"
        of = str(total) if lines.complete else f"at least {total}{scanned}"
        if start > total:
            has = _plural(total) if lines.complete else f"at least {_plural(total)}{scanned}"
            raise ToolError(f"{shown} has {has}; start={start} is past its end")
        last = start + len(picked) - 1
        whole = start == 1 and last == total and unshown is None and cut is None and lines.complete
        header = f"[{shown}: {_plural(total)}]" if whole else f"[{shown}: {_span(start, last)} of {of}]"
        notes = []
        if cut is not None:
            notes.append(f"[line {cut} is longer than {MAX_READ_CHARS} characters; only its start is shown]")
        if unshown is not None:
            stop = end if end is not None else total
            notes.append(f"[{_span(unshown, stop)} not shown; call read_file with start={unshown} to read on]")
        body = "".join(picked)
        return "\n".join([header, body[:-1] if body.endswith("\n") else body, *notes])


class WriteFile(FileTool):
    name = "write_file"
    description = (
        "Create or overwrite a text file of the workspace with the given content. Write a large file in parts: "
        "the first part as usual, then each further part with append=true (an answer cut at the output limit is "
        "not run, so keep each call well below it)."
    )

    class Args(BaseModel):
        path: str = Field(description="file path relative to the workspace root")
        content: str = Field(description="the file's text (or, with append, the text to add)")
        append: bool = Field(False, description="add content to the end of the file (created if missing) instead of replacing it")

    def run(self, args: Args) -> str:
        size = len(args.content.encode())
        if size > MAX_WRITE_BYTES:
            raise ToolError(f"the content is {size} bytes, over the limit of {MAX_WRITE_BYTES} for one file")
        fd, shown = self.fs.open(args.path, append=args.append, write=True)
        if args.append:
            before = os.fstat(fd).st_size
            if before + size > MAX_WRITE_BYTES:
                os.close(fd)
                raise ToolError(f"{shown} would grow to {before + size} bytes, over the limit of {MAX_WRITE_BYTES} for one file")
            _write(fd, args.content)
            return f"appended {size} bytes to {shown} (now {before + size} bytes)"
        _write(fd, args.content)
        return f"wrote {shown} ({size} bytes)"


class EditFile(FileTool):
    name = "edit_file"
    description = "Replace one exact occurrence of `old` with `new` in a file of the workspace."

    class Args(BaseModel):
        path: str = Field(description="file path relative to the workspace root")
        old: str = Field(description="text to find; it must occur exactly once")
        new: str = Field(description="the text to put in its place")

    def run(self, args: Args) -> str:
        data, size = _read(self.fs.open(args.path)[0], MAX_EDIT_BYTES + 1)
        if size > MAX_EDIT_BYTES:
            raise ToolError(f"{args.path} is larger than {MAX_EDIT_BYTES} bytes; edit smaller files")
        text = data.decode("utf-8")
        count = text.count(args.old) if args.old else 0
        if count != 1:
            raise ToolError(f"`old` occurs {count} times in {args.path}; it must occur exactly once")
        fd, shown = self.fs.open(args.path, write=True)
        _write(fd, text.replace(args.old, args.new, 1))
        return f"edited {shown}"


def _read(fd: int, limit: int) -> tuple[bytes, int]:
    """Up to limit bytes of an open file, and its whole size; closes it."""
    with os.fdopen(fd, "rb") as f:
        return f.read(limit), os.fstat(f.fileno()).st_size


def _write(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)

"""What a role can do: file tools confined to one directory, and a shell in the sandbox.

A tool's failure is a `ToolError`: its message goes back to the model, which can
correct itself; it never ends the run.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, Field

from macrohard.llm.base import ToolSpec
from macrohard.models import Ticket
from macrohard.sandbox.base import ExecResult

MAX_READ_BYTES = 100_000
MAX_LIST_ENTRIES = 500
_NOT_PRODUCT = {".git", "__pycache__", ".pytest_cache"}  # folders no listing shows


class ToolError(Exception):
    """A tool refused or failed; the message is for the model."""


class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]

    def run(self, args: Any) -> str: ...


def spec_of(tool: Tool) -> ToolSpec:
    # A copy: the schema is built once per tool class, and a spec may be changed by its user.
    return _spec_of(type(tool)).model_copy(deep=True)


@functools.cache
def _spec_of(tool: type[Tool]) -> ToolSpec:
    # Building a JSON schema costs milliseconds, and every agent loop asks for each tool's.
    schema = tool.Args.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=tool.name, description=tool.description, parameters=schema)


class Confined:
    """Resolves model-supplied paths inside one root; nothing may leave it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, relative: str) -> Path:
        if not relative or "\x00" in relative:
            raise ToolError("a path is required")
        candidate = Path(relative)
        if candidate.is_absolute():
            # /workspace/x is how the sandbox sees the same file.
            parts = candidate.parts
            if parts[:2] != ("/", "workspace"):
                raise ToolError(f"{relative} is outside the workspace; use a path relative to it")
            candidate = Path(*parts[2:]) if len(parts) > 2 else Path(".")
        # resolve() follows symlinks, so a link pointing out of the root is refused too.
        try:
            resolved = (self.root / candidate).resolve()
        except (RuntimeError, OSError) as e:  # a symlink loop, a name too long
            raise ToolError(f"{relative} cannot be resolved: {e}") from e
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolError(f"{relative} leads outside the workspace; only files inside it can be used")
        if ".git" in resolved.relative_to(self.root).parts:
            raise ToolError("the .git folder is managed by macrohard and cannot be touched")
        return resolved

    def show(self, path: Path) -> str:
        return str(path.relative_to(self.root)) or "."

    def files(self, base: Path | None = None) -> Iterator[str]:
        """Every file under base (the root by default), relative to the root, in sorted order."""
        for dirpath, dirnames, filenames in os.walk(base or self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in _NOT_PRODUCT)
            # In a worktree .git is a file pointing at the repository: not the product's.
            yield from (self.show(Path(dirpath) / f) for f in sorted(filenames) if f != ".git")


def _regular(path: Path, shown: str) -> Path:
    """The path, if it is a regular file: a FIFO or device would hang or flood the host."""
    if not path.exists():
        raise ToolError(f"{shown} does not exist")
    if not path.is_file():
        raise ToolError(f"{shown} is not a regular file")
    return path


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
        base = self.fs.path(args.path)
        if not base.is_dir():
            raise ToolError(f"{args.path} is not a directory")
        found = list(itertools.islice(self.fs.files(base), MAX_LIST_ENTRIES + 1))
        if len(found) > MAX_LIST_ENTRIES:
            return "\n".join(found[:MAX_LIST_ENTRIES]) + f"\n... more than {MAX_LIST_ENTRIES} files"
        return "\n".join(found) or "(no files)"


class ReadFile(FileTool):
    name = "read_file"
    description = "Read a text file of the workspace."

    class Args(BaseModel):
        path: str

    def run(self, args: Args) -> str:
        path = _regular(self.fs.path(args.path), args.path)
        size = path.stat().st_size
        with path.open("rb") as f:  # only what is shown: the file may be huge
            text = f.read(MAX_READ_BYTES).decode("utf-8", errors="replace")
        return text if size <= MAX_READ_BYTES else text + f"\n... [{size - MAX_READ_BYTES} more bytes]"


class WriteFile(FileTool):
    name = "write_file"
    description = "Create or overwrite a text file of the workspace with the given content."

    class Args(BaseModel):
        path: str
        content: str

    def run(self, args: Args) -> str:
        path = self.fs.path(args.path)
        if path.exists() or path.is_symlink():
            _regular(path, args.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args.content, encoding="utf-8")
        return f"wrote {self.fs.show(path)} ({len(args.content.encode())} bytes)"


class EditFile(FileTool):
    name = "edit_file"
    description = "Replace one exact occurrence of `old` with `new` in a file of the workspace."

    class Args(BaseModel):
        path: str
        old: str = Field(description="text to find; it must occur exactly once")
        new: str

    def run(self, args: Args) -> str:
        path = _regular(self.fs.path(args.path), args.path)
        if path.stat().st_size > MAX_READ_BYTES:
            raise ToolError(f"{args.path} is larger than {MAX_READ_BYTES} bytes; edit smaller files")
        text = path.read_text(encoding="utf-8")
        count = text.count(args.old) if args.old else 0
        if count != 1:
            raise ToolError(f"`old` occurs {count} times in {args.path}; it must occur exactly once")
        path.write_text(text.replace(args.old, args.new, 1), encoding="utf-8")
        return f"edited {self.fs.show(path)}"


class RunShell:
    name = "run_shell"
    description = (
        "Run a shell command in the project's sandbox (a Linux container with python3 and pytest, "
        "no network); the workspace is the current directory. Returns the exit code and output."
    )

    class Args(BaseModel):
        command: str
        timeout_s: float | None = Field(None, gt=0, description="seconds before the command is killed")

    def __init__(self, execute: Callable[[str, float | None], ExecResult]) -> None:
        self.execute = execute

    def run(self, args: Args) -> str:
        result = self.execute(args.command, args.timeout_s)
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        return f"{status}\n{result.output}"


class AddTicket:
    name = "add_ticket"
    description = (
        "Add a ticket to the plan. Tickets get ids T-1, T-2, ... in the order they are added; "
        "depends_on lists ids of earlier tickets that must be merged first."
    )

    class Args(BaseModel):
        title: str = Field(min_length=1)
        description: str = Field(min_length=1)
        acceptance_criteria: list[str] = Field(min_length=1)
        depends_on: list[str] = Field(default_factory=list)

    def __init__(self, tickets: list[Ticket]) -> None:
        self.tickets = tickets

    def run(self, args: Args) -> str:
        known = {t.id for t in self.tickets}
        unknown = [d for d in args.depends_on if d not in known]
        if unknown:
            raise ToolError(f"depends_on names {', '.join(unknown)}, which are not earlier tickets ({', '.join(sorted(known)) or 'none yet'})")
        ticket = Ticket(id=f"T-{len(self.tickets) + 1}", **args.model_dump())
        self.tickets.append(ticket)
        return f"added {ticket.id}: {ticket.title}"


TOOL_NAMES = frozenset({"list_files", "read_file", "write_file", "edit_file", "run_shell", "add_ticket"})

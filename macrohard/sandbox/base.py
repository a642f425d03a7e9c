"""The sandbox protocol: somewhere to run generated code that is not the host."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel


class ExecResult(BaseModel):
    command: str
    exit_code: int
    duration_s: float
    # Combined stdout and stderr, capped: the head and the tail are kept.
    output: str
    output_bytes: int  # the true size before capping
    truncated: bool = False
    timed_out: bool = False
    oom_killed: bool = False

    def tail(self, chars: int = 2000) -> str:
        return self.output[-chars:]


class Sandbox(Protocol):
    """One running container with a host directory mounted at /workspace."""

    # Where the provider's output_dir is seen from inside ("" without one).
    output_path: str

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult: ...

    def warm(self, command: str) -> None:
        """Start `command` ahead, so exec(command) finds its start-up done.

        The command must read one line of standard input before it looks at the
        workspace: it is held there until exec() releases it. Any other exec ends it.
        """
        ...

    def idle(self) -> bool:
        """Whether no process of its own is left: nothing in it can change a file until exec().

        When it is idle, host git may read its files without pausing it.
        """
        ...

    def end_processes(self) -> None:
        """End whatever its commands left running: it is set aside, to be removed later."""
        ...

    def pause(self) -> None:
        """Freeze every process in the sandbox: host git is about to read its files."""
        ...

    def unpause(self) -> None: ...

    def stop(self) -> None: ...


class SandboxProvider(Protocol):
    def start(
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None
    ) -> Sandbox:
        """A sandbox on workdir (read-only if asked), with output_dir writable at its output_path."""
        ...

    def prune(self, labels: dict[str, str] | None = None) -> int:
        """Remove leftover sandboxes carrying these labels (all of ours when None)."""
        ...

    def prune_orphans(self, labels: dict[str, str] | None = None) -> int:
        """Remove the sandboxes whose owning process has died (a crashed run's), never a live one's."""
        ...

"""A sandbox that runs commands as local subprocesses: for fast unit tests of the graph.

It sits behind the Sandbox protocol only; the e2e tests use the real Docker sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from macrohard.sandbox.base import ExecResult


class LocalSandbox:
    def __init__(self, workdir: Path, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.labels = labels
        self.read_only = read_only
        self.output_path = str(output_dir) if output_dir is not None else ""
        self.stopped = False
        self.paused = False
        self.pauses = 0
        self.timeouts: list[float | None] = []
        self.warmed: list[str] = []
        self.commands: list[str] = []

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        self.timeouts.append(timeout_s)
        self.commands.append(command)
        started = time.perf_counter()
        proc = subprocess.run(
            ["sh", "-c", command], cwd=self.workdir, capture_output=True, timeout=timeout_s or 60,
            stdin=subprocess.DEVNULL,  # as the sandbox's runner gives commands: nothing to read
            env={"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp",
                 "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        return ExecResult(command=command, exit_code=proc.returncode, duration_s=time.perf_counter() - started,
                          output=out, output_bytes=len(out))

    def warm(self, command: str) -> None:
        # Only recorded: starting ahead saves time in a container, and exec runs the command either way.
        self.warmed.append(command)

    def end_processes(self) -> None:
        self.ended = True  # a local command leaves nothing running to end

    def idle(self) -> bool:
        # Never idle: commits freeze it, as a sandbox with a process left running is.
        return False

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def unpause(self) -> None:
        self.paused = False

    def stop(self) -> None:
        self.stopped = True


class LocalSandboxProvider:
    def __init__(self) -> None:
        self.started: list[LocalSandbox] = []
        self.pruned: list[dict[str, str] | None] = []

    def start(
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None
    ) -> LocalSandbox:
        box = LocalSandbox(workdir, labels, read_only, output_dir)
        self.started.append(box)
        return box

    def prune(self, labels: dict[str, str] | None = None) -> int:
        self.pruned.append(labels)
        return 0

    def prune_orphans(self, labels: dict[str, str] | None = None) -> int:
        return 0

"""Sandboxes of one run: one per ticket in progress, one for main; every command recorded."""

from __future__ import annotations

import threading
from pathlib import Path

from macrohard.sandbox.base import ExecResult, Sandbox, SandboxProvider
from macrohard.transcript.log import TranscriptLog

OUTPUT_TAIL_CHARS = 4000


class RunSandboxes:
    def __init__(self, provider: SandboxProvider, transcript: TranscriptLog, run_id: str) -> None:
        self.provider = provider
        self.transcript = transcript
        self.run_id = run_id
        self._boxes: dict[str, Sandbox] = {}
        self._lock = threading.Lock()

    def _get(self, key: str, workdir: Path) -> Sandbox:
        with self._lock:
            box = self._boxes.get(key)
        if box is None:
            # Started outside the lock: parallel tickets should not wait on each other.
            box = self.provider.start(workdir, labels={"macrohard.run": self.run_id, "macrohard.ticket": key})
            with self._lock:
                self._boxes[key] = box
        return box

    def exec(
        self, key: str, workdir: Path, command: str, *, timeout_s: float | None = None, role: str | None = None
    ) -> tuple[ExecResult, str]:
        """Run a command in `key`'s sandbox; returns the result and its transcript event id."""
        result = self._get(key, workdir).exec(command, timeout_s=timeout_s)
        event = self.transcript.append(
            "sandbox.exec",
            role=role,
            ticket=None if key == "main" else key,
            command=command,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 4),
            timed_out=result.timed_out,
            oom_killed=result.oom_killed,
            output_bytes=result.output_bytes,
            output_tail=result.tail(OUTPUT_TAIL_CHARS),
        )
        return result, event.id

    def release(self, key: str) -> None:
        with self._lock:
            box = self._boxes.pop(key, None)
        if box is not None:
            box.stop()

    def close(self) -> None:
        with self._lock:
            boxes, self._boxes = list(self._boxes.values()), {}
        for box in boxes:
            box.stop()

"""Sandboxes of one run: one per ticket in progress, one for main; every command recorded.

Starting and stopping containers happens off the critical path: a ticket's sandbox
starts while its engineer's first model call is in flight, and stops in the
background once the ticket is done. A stop can also be parked until the CPU has room
(`release(later=True)`, then `flush()` when the next model calls start): two cores
busy with verdicts should not also be removing containers. And while the judge or a
verdict runs (`urgent()`), or a ticket is between a model answer and its next call
(`before_calls()`), stops and the starts of sandboxes nothing needs yet wait
(company/background.py), unless someone needs them meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from macrohard.company.background import BackgroundPool
from macrohard.errors import SandboxError
from macrohard.sandbox.base import ExecResult, Extras, Sandbox, SandboxProvider
from macrohard.transcript.log import TranscriptLog

OUTPUT_TAIL_CHARS = 4000


class RunSandboxes:
    def __init__(self, provider: SandboxProvider, transcript: TranscriptLog, run_id: str) -> None:
        self.provider = provider
        self.transcript = transcript
        self.run_id = run_id
        self._boxes: dict[str, Future[Sandbox]] = {}
        self._stopping: list[Future[None]] = []
        self._stopping_keys: dict[str, list[Future[None]]] = {}
        self._parked: dict[str, list[Future[Sandbox]]] = {}  # released, to be stopped at the next flush()
        self._ran: set[str] = set()  # keys whose current sandbox has been given a command
        self._lock = threading.Lock()
        self._pool = BackgroundPool(max_workers=8, thread_name_prefix="sandbox")
        # What a role's sandbox gets beside its workspace (its stack's image, packages, cache);
        # a verdict's sandbox is given its own.
        self.extras: Callable[[str], Extras] | None = None

    def prepare(
        self, key: str, workdir: Path, *, read_only: bool = False, output_dir: Path | None = None,
        warm: Callable[[str], str] | None = None, warm_runs: int = 1, extras: Extras | None = None,
        ahead: bool = False,
    ) -> None:
        """Start `key`'s sandbox in the background, if it is not running yet.

        `warm` gives, from the sandbox's output path, a command to start ahead in it
        (see Sandbox.warm), `warm_runs` times: its execs later find their start-up done.
        `ahead`: nothing needs it yet (a later verdict's, a role's before its first command),
        so it waits while the judge runs (see urgent()).
        """
        with self._lock:
            # A parked sandbox of the same key (the ticket's last attempt) goes first.
            self._stop_parked(key, background=ahead)
            if key not in self._boxes:
                if warm is not None:
                    self._ran.add(key)
                else:
                    self._ran.discard(key)
                self._boxes[key] = self._pool.submit(
                    self._start, key, workdir, read_only, output_dir, warm, warm_runs, extras, background=ahead, key=key)

    def _start(
        self, key: str, workdir: Path, read_only: bool, output_dir: Path | None, warm: Callable[[str], str] | None,
        warm_runs: int, extras: Extras | None,
    ) -> Sandbox:
        started = time.perf_counter()
        if extras is None and self.extras is not None:
            extras = self.extras(key)
        box = self.provider.start(
            workdir, labels={"macrohard.run": self.run_id, "macrohard.ticket": key},
            read_only=read_only, output_dir=output_dir, extras=extras,
        )
        if warm is not None:
            for _ in range(warm_runs):
                box.warm(warm(box.output_path))
        self.transcript.append("sandbox.start", ticket=_ticket(key), sandbox=key, read_only=read_only,
                               duration_s=round(time.perf_counter() - started, 4))
        return box

    def output_path(self, key: str) -> str:
        """Where `key`'s output folder is seen from inside its sandbox."""
        self._pool.want(key)
        with self._lock:
            pending = self._boxes[key]
        return pending.result().output_path

    @contextmanager
    def quiet(self, key: str) -> Iterator[None]:
        """Nothing in `key`'s sandbox runs inside this block: host git may read its files.

        A sandbox with processes left running is frozen for the block; one being stopped
        is waited for.
        """
        self._pool.want(key)
        with self._lock:
            self._stop_parked(key, background=False)  # released: it stops now rather than be frozen
            pending = self._boxes.get(key)
            stopping = list(self._stopping_keys.get(key, []))
            ran = key in self._ran
        for done in stopping:
            done.result()
        if not ran:
            # No command was ever given to it: nothing but the runner is in it, started or
            # still starting, and nothing is given one while its ticket commits.
            yield
            return
        box = pending.result() if pending is not None and pending.exception() is None else None
        # Idle (no process of its own left), a sandbox cannot change a file until the
        # orchestrator starts a command, and none starts while its ticket commits: no
        # need to freeze it. Otherwise a process left running could race host git.
        if box is None or box.idle():
            yield
            return
        try:
            _pause(box)
        except SandboxError as e:
            # The freezer can fail (a process stuck in the kernel); stopping the sandbox
            # ends every process in it, which is as safe. The next command starts a new one.
            self.transcript.append("sandbox.pause_failed", ticket=_ticket(key), sandbox=key, error=e.message)
            with self._lock:
                if self._boxes.get(key) is pending:
                    del self._boxes[key]
            self._stop(key, pending)
            yield
            return
        try:
            yield
        finally:
            box.unpause()

    def exec(
        self, key: str, workdir: Path, command: str, *, timeout_s: float | None = None, role: str | None = None
    ) -> tuple[ExecResult, str]:
        """Run a command in `key`'s sandbox; returns the result and its transcript event id."""
        self.prepare(key, workdir)
        self._pool.want(key)
        with self._lock:
            pending = self._boxes[key]
            self._ran.add(key)
        result = pending.result().exec(command, timeout_s=timeout_s)
        event = self.transcript.append(
            "sandbox.exec",
            role=role,
            ticket=_ticket(key),
            sandbox=key,
            command=command,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 4),
            timed_out=result.timed_out,
            oom_killed=result.oom_killed,
            output_bytes=result.output_bytes,
            output_tail=result.tail(OUTPUT_TAIL_CHARS),
        )
        return result, event.id

    def end_processes(self, key: str, *, keep_warm: bool = False) -> None:
        """End whatever commands left running in `key`'s sandbox (one role hands it to the next;
        `keep_warm`: one run of a verdict's sandbox hands it to the next, whose command waits)."""
        with self._lock:
            pending = self._boxes.get(key)
            ran = key in self._ran
        if pending is not None and ran:  # given no command, it has nothing to end (it may still be starting)
            _end_processes(pending, keep_warm)

    def release(self, key: str, *, later: bool = False) -> None:
        """Stop `key`'s sandbox in the background; `later`: at the next flush() instead.

        Nothing runs a command in a released sandbox, parked or not: its key is free for a
        new one (which stops the parked one first).
        """
        with self._lock:
            pending = self._boxes.pop(key, None)
            if pending is None:
                return
            if later:
                # Set aside whole, but with nothing of its own left running meanwhile: after its
                # start, when that is still held back (a verdict that ended before its command).
                self._pool.submit(_end_processes, pending, background=not pending.done(), key=key)
                self._parked.setdefault(key, []).append(pending)
            else:
                self._submit_stop(key, pending)

    def retire(self, key: str, after: Callable[[], None]) -> None:
        """Stop `key`'s sandbox, then call `after` (remove its worktree), in the background.

        For a ticket that is done for good (merged): nothing of it runs again, so its
        cleanup need not hold up the next step. `after` runs only once no process of the
        sandbox is left, as inside quiet(); close() waits for it, and what it raises is
        recorded, not lost: a worktree left behind is only disk.
        """
        with self._lock:
            boxes = [p for p in (self._boxes.pop(key, None),) if p is not None] + self._parked.pop(key, [])
            earlier = list(self._stopping_keys.get(key, []))
            retiring = self._pool.submit(self._retire, key, boxes, earlier, after, background=True, key=key)
            self._stopping.append(retiring)
            self._stopping_keys.setdefault(key, []).append(retiring)

    def _retire(self, key: str, boxes: list[Future[Sandbox]], earlier: list[Future[None]],
                after: Callable[[], None]) -> None:
        try:
            for done in earlier:  # submitted before this one: running or done, never queued behind it
                done.result()
            for pending in boxes:
                self._stop(key, pending)
        except SandboxError as e:  # not stopped: nothing may touch its worktree while it may still run
            self.transcript.append("sandbox.cleanup_failed", ticket=_ticket(key), sandbox=key, error=e.message)
            return
        try:
            after()
        except Exception as e:  # noqa: BLE001 - a cleanup in the background; the run goes on
            self.transcript.append("sandbox.cleanup_failed", ticket=_ticket(key), sandbox=key,
                                   error=str(e).splitlines()[0] if str(e) else type(e).__name__)

    def urgent(self) -> AbstractContextManager[None]:
        """A block of the run's critical path (the judge, a verdict): background work waits meanwhile."""
        return self._pool.urgent()

    def before_calls(self, keys: Iterable[str], *, step: bool = False) -> None:
        """Until each key's next model call is under way (calling(key)), background work waits, as in
        urgent(): from a step's start, or a role's last answer, to that call the ticket's commit and
        prompt are the critical path. `step`: a new step starts, and what the last one left is dropped."""
        self._pool.hold(keys, only=step)

    def calling(self, key: str | None) -> None:
        """key's model call is under way: the stretch before it is over (None: every stretch is)."""
        if key is None:
            self._pool.hold([], only=True)
        else:
            self._pool.go(key)

    def wait_calls(self, timeout_s: float) -> None:
        """Until every ticket of the step has its model call under way, or timeout_s."""
        self._pool.wait_gone(timeout_s)

    def flush(self) -> None:
        """Stop the parked sandboxes, in the background: the CPU has room now."""
        with self._lock:
            for key in list(self._parked):
                self._stop_parked(key)

    def _stop_parked(self, key: str, background: bool = True) -> None:
        for pending in self._parked.pop(key, []):
            self._submit_stop(key, pending, background)

    def _submit_stop(self, key: str, pending: Future[Sandbox], background: bool = True) -> None:
        stopping = self._pool.submit(self._stop, key, pending, background=background, key=key)
        self._stopping.append(stopping)
        self._stopping_keys.setdefault(key, []).append(stopping)

    def close(self) -> None:
        """Stop every sandbox of the run and wait until they are gone."""
        # Nothing is urgent any more; and what was held (starts among it) goes to the pool
        # before the stops that wait on those starts, so no stop can wait behind its own start.
        self._pool.release()
        with self._lock:
            remaining, self._boxes = dict(self._boxes), {}
            for key in list(self._parked):
                self._stop_parked(key, background=False)
            stopping = self._stopping + [self._pool.submit(self._stop, k, p) for k, p in remaining.items()]
            self._stopping, self._stopping_keys = [], {}
        for done in stopping:
            done.result()
        self._pool.shutdown()

    def _stop(self, key: str, pending: Future[Sandbox]) -> None:
        if pending.exception() is not None:
            return  # it never started; the error was reported where it was needed
        started = time.perf_counter()
        pending.result().stop()
        self.transcript.append("sandbox.stop", ticket=_ticket(key), sandbox=key, duration_s=round(time.perf_counter() - started, 4))


def _end_processes(pending: Future[Sandbox], keep_warm: bool = False) -> None:
    if pending.exception() is None:
        pending.result().end_processes(keep_warm=keep_warm)


def _pause(box: Sandbox) -> None:
    try:
        box.pause()
    except SandboxError:
        time.sleep(0.2)  # a freeze that timed out often succeeds at once when asked again
        box.pause()


def _ticket(key: str) -> str | None:
    # Keys are "main", a ticket id, or "<purpose>:<ticket id or main>" for a verdict's sandboxes.
    name = key.rsplit(":", 1)[-1]
    return None if name == "main" else name

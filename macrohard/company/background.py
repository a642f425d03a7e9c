"""A thread pool whose background work waits while urgent work runs.

On a small machine a run's sandbox work competes for the CPU: a verdict (the run's
critical path: the next step waits for its judge) shares two cores with containers
starting ahead for later verdicts and stopping after earlier ones, which nothing waits
for yet. Those are submitted as background work: while any urgent block is open
(`urgent()`, around the judge and each verdict) they are held, and they go to the pool when
the last one closes, when someone needs one of them (`want(key)`), or after
MAX_HOLD_S at most (a suite of many minutes must not keep containers alive that long).

A ticket's branch is on the critical path too, between its model calls: from its step's
start (or its last model answer) until its next model call is under way, its commits and
prompts keep that call waiting, and at max_parallel 4 four branches cross such a stretch
at once. `hold(name)` opens one, `go(name)` ends it; they count as urgent blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

MAX_HOLD_S = 10.0


@dataclass
class _Held:
    key: str | None
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class BackgroundPool:
    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._urgent = 0
        self._holds: set[str] = set()
        self._gone = threading.Condition(self._lock)  # notified when the last hold goes
        self._held: list[_Held] = []
        self._timer: threading.Timer | None = None

    def submit(self, fn: Callable[..., Any], *args: Any, background: bool = False, key: str | None = None) -> Future[Any]:
        """Run fn(*args) in the pool; background work is held while an urgent block is open."""
        with self._lock:
            if not background or self._urgent == 0:
                return self._pool.submit(fn, *args)
            held = _Held(key, Future(), fn, args)
            self._held.append(held)
            if self._timer is None:
                self._timer = threading.Timer(MAX_HOLD_S, self._held_too_long)
                self._timer.daemon = True
                self._timer.start()
            return held.future

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """While inside, background work waits (see the module's docstring)."""
        with self._lock:
            self._urgent += 1
        try:
            yield
        finally:
            with self._lock:
                self._urgent -= 1
                if self._urgent == 0:
                    self._release()

    def hold(self, names: Iterable[str], *, only: bool = False) -> None:
        """Urgent until go(name), for each name; `only`: holds left from before are dropped first."""
        with self._lock:
            if only:
                self._drop_holds()
            new = set(names) - self._holds
            self._holds |= new
            self._urgent += len(new)
            self._settle()

    def go(self, name: str) -> None:
        """Name's stretch is over (a no-op when it holds nothing)."""
        with self._lock:
            if name in self._holds:
                self._holds.discard(name)
                self._urgent -= 1
                self._settle()

    def wait_gone(self, timeout_s: float) -> None:
        """Until no hold is left, or timeout_s."""
        with self._gone:
            self._gone.wait_for(lambda: not self._holds, timeout_s)

    def _drop_holds(self) -> None:
        self._urgent -= len(self._holds)
        self._holds = set()

    def _settle(self) -> None:
        if not self._holds:
            self._gone.notify_all()
        if self._urgent == 0:
            self._release()

    def want(self, key: str) -> None:
        """Key's held work is needed now: it goes to the pool, urgent blocks or not."""
        with self._lock:
            wanted = [h for h in self._held if h.key == key]
            self._held = [h for h in self._held if h.key != key]
            self._send(wanted)

    def release(self) -> None:
        """Everything held goes to the pool, in the order it was submitted; holds are dropped."""
        with self._lock:
            self._drop_holds()
            self._gone.notify_all()
            self._release()  # urgent blocks or not

    def _release(self) -> None:
        held, self._held = self._held, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send(held)

    def _held_too_long(self) -> None:
        with self._lock:
            self._release()

    def shutdown(self) -> None:
        self.release()
        self._pool.shutdown(wait=False)

    def _send(self, held: list[_Held]) -> None:
        # Under the lock: work submitted later cannot overtake what is released now.
        for h in held:
            self._pool.submit(_run_into, h.future, h.fn, h.args)


def _run_into(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn(*args))
    except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future, as the pool does
        future.set_exception(e)

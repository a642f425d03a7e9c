"""Who owns a sandbox container, and removing a process's containers when it ends.

Every container carries an owner label, `host:pid:start`, naming the process that
started it (`start` is the process's start time in clock ticks since boot, so a
reused pid is not mistaken for the owner). A container whose owner is gone is an
orphan that a crash left behind; one whose owner lives belongs to a run in progress
and is never touched.

Containers a process started are removed when it exits normally (atexit), on SIGINT
(KeyboardInterrupt unwinds through the callers' cleanup) and on SIGTERM and SIGHUP
(a handler removes them, then lets the signal do what it would have done). Only
SIGKILL and power loss leave orphans, for `prune_orphans` to find.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Protocol

OWNER_LABEL = "macrohard.owner"
CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Closable(Protocol):
    def close(self) -> int: ...

    def close_from_signal(self) -> None: ...


_owners: weakref.WeakSet[Closable] = weakref.WeakSet()
_previous: dict[int, _Handler] = {}
_installed = False
_lock = threading.Lock()


def _start_ticks(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/PID/stat), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_id() -> str:
    """This process as a label value: `host:pid:start`."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the owning process still runs; None when that cannot be told from here."""
    if not owner:
        return None
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    host, pid, start = parts[0], int(parts[1]), int(parts[2])
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    ticks = _start_ticks(pid)
    return ticks is None or start == 0 or ticks == start


def register(owner: Closable) -> None:
    """Remove `owner`'s containers at exit and on SIGTERM/SIGHUP."""
    global _installed
    _owners.add(owner)
    with _lock:
        if not _installed:
            atexit.register(close_all)
            _installed = True
    install_signal_handlers()


def install_signal_handlers() -> None:
    """Install the cleanup handlers once, from the main thread (the only one allowed to)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for signum in CLEANUP_SIGNALS:
            if signum in _previous:
                continue
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN:
                continue  # the process chose to survive this signal: so do its sandboxes
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def close_all() -> None:
    """Remove every container of every registered owner; errors are swallowed at exit."""
    for owner in list(_owners):
        with contextlib.suppress(Exception):
            owner.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # The interrupted code may hold the owners' locks or connections, so cleanup
    # takes neither (close_from_signal uses a fresh client).
    for owner in list(_owners):
        with contextlib.suppress(Exception):
            owner.close_from_signal()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

"""The command runner that lives inside each sandbox.

`docker exec` costs about 60 ms per command (runc sets up a new process in the
container), so each sandbox starts this runner once with `docker exec` and keeps its
stdin and stdout attached. It reads one JSON request per line, runs the command with
sh in a new session, enforces the time limit inside the container, keeps only the
head and tail of the output, and answers with frames on stdout: a kind byte, a
4-byte big-endian length, the payload.

A command may be started ahead ("warm"): a request with `"warm": true` starts it with
its standard input held open and answers at once; the next request for the same
command writes one line to that input (the go) and supervises it from then on, its
time limit counting from the go. Only a command that reads that line before it looks
at the workspace may be warmed (the verdict's pytest imports pytest, then waits):
its start-up happens while the orchestrator is still preparing the tree. Up to
MAX_HELD wait at once, each released by a request of its own (a verdict, then the
same tests on another tree); any other request ends the waiting ones first.

A request `{"probe": "idle"}` is answered with whether no process but the runner is
left (a RESULT frame only): then nothing can change the workspace until the client
starts a command, and the host may read it without freezing the container.
`{"probe": "end"}` ends every process but the runner (a sandbox set aside for removal);
with `"keep_warm": true`, the warm commands still waiting are spared (a sandbox between
two runs).

Inside the container, BOOTSTRAP reads this file's source from stdin and runs it, so
it uses the standard library only and runs on Python 3.8 or later. The host imports
it too, for `OutputCap` and the frame format.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import time
from typing import Any

# Passed to `python3 -c`: reads a length line, then that many bytes of source, from
# stdin (a short command line keeps `ps` readable), then serves the rest of stdin.
BOOTSTRAP = (
    "import sys;i=sys.stdin.buffer;n=int(i.readline());"
    "exec(compile(i.read(n),'macrohard-runner','exec'),{'__name__':'__main__'})"
)
HEADER = struct.Struct(">cI")
HELLO, OUTPUT, RESULT, ERROR = b"H", b"O", b"R", b"E"
READ_CHUNK = 1 << 20
PIPE_SIZE = 1 << 20  # fewer wake-ups when a command floods its output
F_SETPIPE_SZ = 1031
PR_SET_DUMPABLE = 4
TICK_S = 0.05  # how often a running command's exit is checked while its output stays open
KILL_ROUNDS = 3
MAX_HELD = 2  # warm commands waiting at once
SANDBOX_FLAG = "--sandbox"
KEEP_ALIVE = b"sleep\x00infinity\x00"  # the sandbox container's command, under its init
CAP_KILL = 5
SANDBOXED = False  # set by main() from in_sandbox()
CROWDED = "the sandbox was running out of processes; the ones earlier commands left were killed"
# cgroup v2, then v1: the processes in this container and their limit.
PIDS_FILES = (("/sys/fs/cgroup/pids.current", "/sys/fs/cgroup/pids.max"),
              ("/sys/fs/cgroup/pids/pids.current", "/sys/fs/cgroup/pids/pids.max"))
# cgroup v2, then v1: the kernel's count of OOM kills in this container.
OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


class OutputCap:
    """Collects a byte stream, keeping the head and tail halves past `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self._head_size = self.limit // 2
        self._tail_size = self.limit - self._head_size
        self.head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_size - len(self.head)
        if room > 0:
            self.head.extend(data[:room])
            data = data[room:]
        self._tail.extend(data)
        # Trim only now and then so a stream of small chunks stays linear.
        if len(self._tail) > 2 * self._tail_size:
            del self._tail[: -self._tail_size]

    @property
    def tail(self) -> bytes:
        return bytes(self._tail[-self._tail_size :]) if self._tail_size else b""


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def oom_kills() -> int:
    """The cgroup's OOM kill count, or -1 where the kernel does not report one."""
    for path in OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return -1


def pids_crowded() -> bool:
    """True when at least half the container's process limit is in use.

    Commands end with their processes unless those were sent to the background with
    their output redirected; half the limit taken by such leftovers is the mark of
    a fork bomb, not of a server or two.
    """
    for current_file, max_file in PIDS_FILES:
        try:
            with open(current_file) as f:
                current = int(f.read())
            with open(max_file) as f:
                limit = f.read().strip()
        except (OSError, ValueError):
            continue
        return limit.isdigit() and current * 2 >= int(limit)
    return False


def in_sandbox(argv: list[str]) -> bool:
    """True only inside a macrohard sandbox, where `kill_rest` is safe.

    Anywhere else, killing every process one may signal would take down a session
    or a whole machine, so all three must hold: the client asked for it, PID 1 is
    the sandbox's keep-alive, and we lack CAP_KILL (so other uids are out of reach).
    """
    try:
        with open("/proc/1/cmdline", "rb") as f:
            keep_alive = KEEP_ALIVE in f.read()
        with open("/proc/self/status") as f:
            caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return False
    return SANDBOX_FLAG in argv and keep_alive and not caps & (1 << CAP_KILL)


def kill_rest(keep: int, spare: frozenset[int] = frozenset()) -> None:
    """SIGKILL every process this user may signal except `keep` and the process groups in
    `spare` (warm commands: each leads a session of its own, which no other process can
    join), inside a sandbox only.

    The container's init and keep-alive run as another uid, so they are out of
    reach; several rounds catch what forked while we were killing.
    """
    if not SANDBOXED:
        return
    for _ in range(KILL_ROUNDS):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in (keep, 1) and not (spare and _group(int(name)) in spare):
                _signal(int(name), signal.SIGKILL)


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def others_alive(keep: int) -> bool:
    """Whether any task is left besides `keep` (the runner) and the container's own.

    Counted by the kernel, not by walking /proc: the container cgroup's pids.current
    holds every task in it (each thread, a zombie's still-running threads, processes in
    any namespace, a chain that forks its successor and exits). It must equal the tasks
    of the container's init and keep-alive (PID 1's uid) and of the runner; anything
    more, or a count that cannot be read, is a process of the sandbox's own.
    """
    current = _pids_current()
    if current is None:
        return True
    keeper = _status_uid("1")
    known = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        if int(name) == keep or name == "1" or (keeper is not None and _status_uid(name) == keeper):
            threads = _status_field(name, "Threads")
            known += int(threads) if threads and threads.isdigit() else 1
    return current > known


def _pids_current() -> int | None:
    for current_file, _ in PIDS_FILES:
        try:
            with open(current_file) as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return None


def _status_field(pid: str, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _status_uid(pid: str) -> str | None:
    value = _status_field(pid, "Uid")
    return value.split()[1] if value else None  # the effective uid


def _pipe_holders(inode: int) -> list[int]:
    """Pids that hold pipe `inode` open."""
    target = f"pipe:[{inode}]"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
            if any(os.readlink(f"/proc/{name}/fd/{fd}") == target for fd in fds):
                found.append(int(name))
        except OSError:
            continue
    return found


_libc: Any = None


def _prctl(option: int, value: int) -> None:
    """prctl(2) through libc; does nothing where ctypes or libc is missing."""
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.prctl(option, value, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def _first_in_line() -> None:
    # Runs in the child before exec: the command, not the runner, is what the OOM
    # killer should pick. Raising one's own score needs no privilege, but the file
    # belongs to root while the process is not dumpable (inherited from the runner).
    _prctl(PR_SET_DUMPABLE, 1)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _group_gone(pgid: int) -> bool:
    """True when no live process is left in process group `pgid`.

    Zombies do not count: the container's init reaps them, but not at once, and
    kill(-pgid, 0) would still find them.
    """
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return False
    return True


class Command:
    """One command run to completion under a time limit."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.command = str(request["command"])
        self.timeout = float(request["timeout"])
        self.grace = float(request["grace"])
        self.drain = float(request["drain"])
        self.cap = OutputCap(int(request["limit"]))
        self.timed_out = False
        self.killed = False
        self.notes: list[str] = []  # what the runner did that the caller should know
        self.inode = 0
        self.eof = False
        self._fd = -1
        self._selector: selectors.BaseSelector | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._oom_before = -1

    def run(self) -> dict[str, Any]:
        self.start()
        return self.finish()

    def start(self, *, held: bool = False) -> None:
        """Spawn the command; `held` keeps its standard input open until go()."""
        self._oom_before = oom_kills()
        read_fd, write_fd = os.pipe()
        try:
            try:
                import fcntl

                fcntl.fcntl(read_fd, F_SETPIPE_SZ, PIPE_SIZE)
            except (ImportError, OSError):
                pass
            self.inode = os.fstat(read_fd).st_ino
            self._fd = read_fd
            self._proc = self._spawn(write_fd, held)
        finally:
            os.close(write_fd)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def waiting(self) -> bool:
        """Started held and still alive: ready for go()."""
        return self._proc is not None and self._proc.stdin is not None and self._proc.poll() is None

    def go(self, request: dict[str, Any]) -> None:
        """Release a held command under `request`'s limits: its one line of input, then end of input."""
        self.timeout = float(request["timeout"])
        self.grace = float(request["grace"])
        self.drain = float(request["drain"])
        self.cap = OutputCap(int(request["limit"]))
        stdin = self._proc.stdin if self._proc is not None else None
        if stdin is not None:
            # If it ended meanwhile, the write must not end the runner by SIGPIPE.
            previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            try:
                stdin.write(b"\n")
                stdin.close()
            except OSError:
                pass  # finish() reports how it ended
            finally:
                signal.signal(signal.SIGPIPE, previous)

    def abandon(self) -> None:
        """End a held command that will not be used, and everything it started."""
        if self._proc is not None:
            _signal_group(self._proc.pid, signal.SIGKILL)
            if self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            self._proc.wait()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def finish(self) -> dict[str, Any]:
        """Supervise the started command to its end; the answer for the client."""
        read_fd, proc = self._fd, self._proc
        try:
            code = 126 if proc is None else self._supervise(proc, read_fd)
        finally:
            os.close(read_fd)
            self._fd = -1
        oom_after = oom_kills()
        return {
            "exit_code": code,
            "timed_out": self.timed_out,
            "oom_killed": self._oom_before >= 0 and oom_after > self._oom_before,
            "total": self.cap.total,
            "head": len(self.cap.head),
            "notes": self.notes,
        }

    def _spawn(self, write_fd: int, held: bool = False) -> subprocess.Popen[bytes] | None:
        if SANDBOXED and pids_crowded():
            self.notes.append(CROWDED)
            kill_rest(os.getpid())
        for attempt in (1, 2):
            try:
                return subprocess.Popen(
                    ["sh", "-c", self.command],
                    stdin=subprocess.PIPE if held else subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                    start_new_session=True,
                    preexec_fn=_first_in_line,  # noqa: PLW1509 (the runner has one thread)
                )
            except BlockingIOError:
                # The process limit is used up, most likely by what an earlier command
                # left running: end it all and try once more.
                if CROWDED not in self.notes:
                    self.notes.append(CROWDED)
                kill_rest(os.getpid())
                if attempt == 2:
                    return None
            except OSError as e:
                self.notes.append(f"cannot start sh: {e.strerror}")
                return None
        return None

    def _supervise(self, proc: subprocess.Popen[bytes], read_fd: int) -> int:
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            self._selector, self._fd = selector, read_fd
            deadline = time.monotonic() + self.timeout
            code = self._wait(proc, deadline)
            if code is None:
                return self._time_out(proc)
            # Background processes that kept the output open get a moment to finish.
            if not self._drain(time.monotonic() + self.drain):
                self._end_holders(proc.pid)
        return _shell_code(code)

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float) -> int | None:
        """Collect output until the command exits (its code) or the deadline (None)."""
        while True:
            code = proc.poll()
            remaining = deadline - time.monotonic()
            if code is not None or remaining <= 0:
                return code
            if self.eof:  # the command closed its output but runs on
                try:
                    return proc.wait(timeout=min(remaining, TICK_S))
                except subprocess.TimeoutExpired:
                    continue
            # The tick bounds how late an exit is seen while a background process
            # keeps the output open; otherwise end of stream wakes us at once.
            self._drain(time.monotonic() + min(remaining, TICK_S))

    def _drain(self, until: float) -> bool:
        """Read output until end of stream (True) or `until` (False)."""
        while not self.eof:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return False
            assert self._selector is not None
            if self._selector.select(remaining):
                chunk = os.read(self._fd, READ_CHUNK)
                self.cap.add(chunk)
                self.eof = not chunk
        return True

    def _end_holders(self, pgid: int) -> None:
        """The command ended but something it started still holds its output: end that."""
        self.notes.append(
            "processes the command left running still held its output and were killed; "
            "redirect both stdout and stderr of background processes to keep them"
        )
        for round_ in range(KILL_ROUNDS):
            if round_:  # something keeps forking: end the command's whole group
                _signal_group(pgid, signal.SIGKILL)
            for pid in _pipe_holders(self.inode):
                if pid != os.getpid():
                    _signal(pid, signal.SIGKILL)
            if self._drain(time.monotonic() + 0.2):
                return

    def _time_out(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM the command's group, SIGKILL it after the grace, then everything else."""
        self.timed_out = True
        pgid = proc.pid
        _signal_group(pgid, signal.SIGTERM)
        grace_end = time.monotonic() + self.grace
        while time.monotonic() < grace_end:
            proc.poll()  # a zombie leader would keep the group alive
            if _group_gone(pgid):
                break
            until = min(grace_end, time.monotonic() + 0.01)
            if self.eof:
                time.sleep(max(until - time.monotonic(), 0))
            else:
                self._drain(until)
        if not _group_gone(pgid):
            self.killed = True
            _signal_group(pgid, signal.SIGKILL)
        # Whatever left the group (setsid, a new process group) ends too.
        kill_rest(os.getpid())
        proc.wait()
        self._drain(time.monotonic() + 1.0)
        return 137 if self.killed else 124


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except OSError:
        pass


def _shell_code(code: int) -> int:
    """A shell's view of an exit status: 128 + the signal for a killed process."""
    return 128 - code if code < 0 else code


def _send(kind: bytes, payload: bytes) -> None:
    data = memoryview(frame(kind, payload))
    while data:
        data = data[os.write(1, data) :]


def main() -> None:
    global SANDBOXED
    SANDBOXED = in_sandbox(sys.argv)
    # Other processes of the same uid (the commands we run) may then neither ptrace
    # the runner nor open its stdin and stdout through /proc to forge answers.
    _prctl(PR_SET_DUMPABLE, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    hello = {"pid": os.getpid(), "uid": os.getuid(), "sandboxed": SANDBOXED}
    _send(HELLO, json.dumps(hello).encode())
    held: list[Command] = []  # warm commands waiting for their go, oldest first
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            if request.get("probe") == "idle":
                busy = bool(held) or others_alive(os.getpid())
                _send(RESULT, json.dumps({"idle": not busy}).encode())
                continue
            if request.get("probe") == "end":
                # Nothing more will run here (or, keeping the warm ones, nothing of the last run goes on):
                # end whatever earlier commands left running.
                if request.get("keep_warm") is True:
                    _abandon([c for c in held if not c.waiting()])  # ended already: reaped, its output closed
                    held = [c for c in held if c.waiting()]
                else:
                    _abandon(held)
                    held = []
                kill_rest(os.getpid(), frozenset(c.pid for c in held if c.pid is not None))
                _send(RESULT, json.dumps({"ended": True}).encode())
                continue
            command = Command(request)
        except (ValueError, KeyError, TypeError) as e:
            _send(ERROR, json.dumps({"error": f"bad request: {e}"}).encode())
            continue
        match = None if request.get("warm") else next(
            (c for c in held if c.command == command.command and c.waiting()), None)
        if match is not None:
            held.remove(match)
            command = match
            command.go(request)
            answer = command.finish()
        else:
            if request.get("warm"):
                if len(held) >= MAX_HELD:
                    _abandon(held[:1])
                    held = held[1:]
                command.start(held=True)
                held.append(command)
                _send(OUTPUT, b"")
                _send(RESULT, json.dumps({"exit_code": 0, "timed_out": False, "oom_killed": False, "total": 0,
                                          "head": 0, "notes": [], "warmed": True}).encode())
                continue
            _abandon(held)
            held = []
            answer = command.run()
        _send(OUTPUT, bytes(command.cap.head) + command.cap.tail)
        _send(RESULT, json.dumps(answer).encode())
    # The client is gone: a held command must not go on by itself once its input closes.
    _abandon(held)


def _abandon(commands: list[Command]) -> None:
    for command in commands:
        command.abandon()

if __name__ == "__main__":
    main()

"""The Docker sandbox: the one module that runs containers through the docker SDK.

Each sandbox is one long-lived, hardened container (`sleep infinity` under Docker's
init) with a host directory bind-mounted at /workspace; commands run in it with
`docker exec`. Time limits are enforced inside the container, because ending the
client side of an exec does not stop the process.

The workdir must exist on the machine that runs the Docker engine: with a remote
DOCKER_HOST, bind mounts name paths on that machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
from docker.errors import NotFound
from docker.models.containers import Container

from macrohard.config import SandboxSettings
from macrohard.errors import SandboxError
from macrohard.sandbox.access import sandbox_user
from macrohard.sandbox.base import ExecResult
from macrohard.sandbox.image import DockerFailure, image_exists, one_line

SANDBOX_LABEL = "macrohard.sandbox"
WORKSPACE = "/workspace"
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
KILL_GRACE_S = 2  # between timeout's SIGTERM and its SIGKILL
# The backstop must outlast the kill grace plus Docker's own wait for output
# streams (about 2 s) and the cleanup.
BACKSTOP_MARGIN_S = 10.0
META_LIMIT = 4096
BUILD_HINT = "run `macrohard sandbox build`"

# Kills every process the sandbox user can signal except PID 1 (Docker's init, which
# the kernel protects anyway), the keep-alive (init's oldest child, so the lowest
# pid among init's children) and this shell. Builtins only inside the loop, so no
# fork of ours is caught; three rounds catch what forked while we were killing.
_KILL_REST = r"""
kids=; read -r kids < /proc/1/task/1/children 2>/dev/null
[ -n "$kids" ] || kids=$(ps -o pid= --ppid 1 2>/dev/null)
keep=0
for k in $kids; do [ "$keep" -eq 0 ] || [ "$k" -lt "$keep" ] && keep=$k; done
for _ in 1 2 3; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" -eq 1 ] || [ "$p" -eq "$keep" ] || [ "$p" -eq $$ ] || kill -9 "$p" 2>/dev/null
  done
done
"""

# Runs one command: $0 is the time limit in seconds, $1 the same in centiseconds
# (for the shell's integer arithmetic), $2 the command. The command's stdout and
# stderr both go to the exec's stdout; the exec's stderr carries one line for us.
# GNU timeout signals its whole process group; whatever escaped the group (setsid,
# a new process group) is killed after a timeout. The cgroup's oom_kill counter
# (cgroup v2 memory.events or v1 memory.oom_control) tells an OOM kill apart from
# other SIGKILLs. /proc/uptime has centisecond resolution, enough to tell whether
# exit 124/137 came from the time limit or from the command itself.
_WRAPPER = (
    r"""
oom=$(grep -hs '^oom_kill ' /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control)
s=0.00; read -r s _ < /proc/uptime
timeout -k """
    + str(KILL_GRACE_S)
    + r""" "$0" sh -c "$2" 2>&1
rc=$?
e=0.00; read -r e _ < /proc/uptime
fired=0
case $rc in 124|137)
  if [ $(( ${e%.*}*100 + 1${e#*.} - ${s%.*}*100 - 1${s#*.} )) -ge "$1" ]; then
    fired=1
"""
    + _KILL_REST
    + r"""
  fi;;
esac
oom2=$(grep -hs '^oom_kill ' /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control)
echo "macrohard-exec timed_out=$fired oom_before=${oom##* } oom_after=${oom2##* }" >&2
exit $rc
"""
)
_META = re.compile(r"macrohard-exec timed_out=(\d) oom_before=(\d*) oom_after=(\d*)")


def docker_client() -> docker.DockerClient:
    """A client for the engine named by the environment (DOCKER_HOST), checked with a ping."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env()
        client.ping()
    except DockerFailure as e:
        raise SandboxError(
            f"no Docker engine answers at {where}: {one_line(e)}", "start Docker or set DOCKER_HOST"
        ) from e
    return client


class DockerSandboxProvider:
    """Starts hardened sandbox containers and removes leftovers."""

    def __init__(
        self, settings: SandboxSettings, client: docker.DockerClient | None = None
    ) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        # Connect on first use, so a provider can be built where no engine runs.
        if self._client is None:
            self._client = docker_client()
        return self._client

    def start(self, workdir: Path, *, labels: dict[str, str]) -> DockerSandbox:
        """Start a container with `workdir` mounted read-write at /workspace."""
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(f"sandbox workdir {workdir} is not a directory", "create it first")
        image = self.settings.image
        if not image_exists(self.client, image):
            raise SandboxError(f"sandbox image {image} is missing", BUILD_HINT)
        options = self._run_options(workdir, labels)
        try:
            container = self.client.containers.run(image, **options)
        except DockerFailure as e:
            raise SandboxError(
                f"cannot start a sandbox from {image}: {one_line(e)}",
                f"check the Docker engine, or rebuild the image ({BUILD_HINT})",
            ) from e
        return DockerSandbox(self.client, container, self.settings, workdir)

    def prune(self, labels: dict[str, str] | None = None) -> int:
        """Force-remove every sandbox container matching `labels`; return how many."""
        wanted = {**(labels or {}), SANDBOX_LABEL: "1"}
        filters: dict[str, Any] = {"label": [f"{k}={v}" for k, v in wanted.items()]}
        try:
            found = self.client.containers.list(all=True, sparse=True, filters=filters)
        except DockerFailure as e:
            raise SandboxError(
                f"cannot list sandbox containers: {one_line(e)}", "check the Docker engine"
            ) from e
        removed = 0
        for container in found:
            if _remove(container):
                removed += 1
        return removed

    def _run_options(self, workdir: Path, labels: dict[str, str]) -> dict[str, Any]:
        s = self.settings
        return {
            "command": ["sleep", "infinity"],
            "detach": True,
            "name": f"macrohard-sandbox-{uuid.uuid4().hex[:12]}",
            "hostname": "sandbox",
            "user": sandbox_user(workdir, s.unprivileged_uid),
            "environment": dict(SANDBOX_ENV),
            "labels": {**labels, SANDBOX_LABEL: "1"},
            "volumes": {str(workdir): {"bind": WORKSPACE, "mode": "rw"}},
            "working_dir": WORKSPACE,
            "network_mode": "bridge" if s.network else "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            # exec: test suites run helpers they write to their tmp dirs, and
            # /workspace is executable anyway.
            "tmpfs": {"/tmp": f"size={s.tmpfs_size},mode=1777,exec"},
            "mem_limit": s.memory,
            "memswap_limit": s.memory,
            "pids_limit": s.pids_limit,
            "nano_cpus": int(s.cpus * 1e9),
            "init": True,
        }


class DockerSandbox:
    """One running sandbox container. Use as a context manager, or call stop()."""

    def __init__(
        self,
        client: docker.DockerClient,
        container: Container,
        settings: SandboxSettings,
        workdir: Path,
    ) -> None:
        self._client = client
        self._container = container
        self.settings = settings
        self.workdir = workdir
        self._stopped = False

    @property
    def id(self) -> str:
        return str(self._container.id)

    @property
    def name(self) -> str:
        return str(self._container.name)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Force-remove the container; calling it again does nothing."""
        if not self._stopped:
            _remove(self._container)
            self._stopped = True

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run `command` with sh in /workspace, stdout and stderr combined.

        A timeout ends every process in the sandbox, not only this command's. A
        background process that keeps the output open delays the return by about
        2 s (Docker waits for the stream), so redirect its output.
        """
        if self._stopped:
            raise SandboxError(f"sandbox {self.name} is stopped", "start a new sandbox")
        limit = self.settings.timeout_s if timeout_s is None else timeout_s
        if limit <= 0:
            raise ValueError(f"timeout_s must be positive, got {limit}")
        started = time.monotonic()
        exec_id = self._create_exec(command, limit)
        output = CappedOutput(self.settings.output_limit_bytes)
        meta = bytearray()
        deadline = started + limit + KILL_GRACE_S + BACKSTOP_MARGIN_S
        backstop = self._stream(exec_id, output, meta, deadline)
        if backstop:
            self._kill_rest()
        exit_code = self._exit_code(exec_id)
        duration = time.monotonic() - started
        timed_out, oom_killed = _parse_meta(bytes(meta))
        if timed_out is None:  # the wrapper was killed before it could report
            timed_out = exit_code in (124, 137) and duration >= limit
        timed_out = timed_out or backstop
        text, total, truncated = output.result()
        return ExecResult(
            command=command,
            exit_code=exit_code if exit_code is not None else (124 if timed_out else -1),
            duration_s=duration,
            output=text,
            output_bytes=total,
            truncated=truncated,
            timed_out=timed_out,
            oom_killed=oom_killed,
        )

    def _create_exec(self, command: str, limit: float) -> str:
        # Centiseconds, one less than the limit: two /proc/uptime readings can each
        # be up to a centisecond early.
        limit_cs = max(int(limit * 100) - 1, 0)
        argv = ["sh", "-c", _WRAPPER, f"{limit:.3f}", str(limit_cs), command]
        try:
            created = self._client.api.exec_create(
                self.id, argv, stdout=True, stderr=True, tty=False
            )
        except DockerFailure as e:
            raise self._dead_or(e) from e
        return str(created["Id"])

    def _stream(self, exec_id: str, output: CappedOutput, meta: bytearray, deadline: float) -> bool:
        """Copy the exec's output until it ends; True if the backstop deadline passed."""
        try:
            sock = self._client.api.exec_start(exec_id, socket=True, tty=False)
        except DockerFailure as e:
            raise self._dead_or(e) from e
        try:
            for stream, chunk in _frames(sock, deadline):
                if stream == 2:
                    meta.extend(chunk[: META_LIMIT - len(meta)])
                else:
                    output.add(chunk)
        except _Backstop:
            return True
        except OSError as e:
            raise SandboxError(
                f"lost the connection to sandbox {self.name}: {e}", "check the Docker engine"
            ) from e
        finally:
            _close(sock)
        return False

    def _exit_code(self, exec_id: str) -> int | None:
        # The output stream can end a moment before the engine records the exit.
        for delay in (0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
            time.sleep(delay)
            try:
                info = self._client.api.exec_inspect(exec_id)
            except DockerFailure as e:
                raise self._dead_or(e) from e
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
        return None

    def _kill_rest(self) -> None:
        """Kill every process of the sandbox user but the container's own."""
        try:
            exec_id = self._client.api.exec_create(self.id, ["sh", "-c", _KILL_REST])["Id"]
            self._client.api.exec_start(exec_id)
        except DockerFailure as e:
            raise self._dead_or(e) from e

    def _dead_or(self, e: BaseException) -> SandboxError:
        """Explain an engine failure; a dead container is the usual one."""
        try:
            self._container.reload()
            running = self._container.status == "running"
        except DockerFailure:
            running = False
        if not running:
            return SandboxError(
                f"sandbox {self.name} is no longer running",
                "a command may have killed its processes; start a new sandbox",
            )
        return SandboxError(
            f"docker exec failed in sandbox {self.name}: {one_line(e)}", "check the Docker engine"
        )


class CappedOutput:
    """Collects a byte stream, keeping the head and tail halves past `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self._head_size = self.limit // 2
        self._tail_size = self.limit - self._head_size
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_size - len(self._head)
        if room > 0:
            self._head.extend(data[:room])
            data = data[room:]
        self._tail.extend(data)
        # Trim only now and then so a stream of small chunks stays linear.
        if len(self._tail) > 2 * self._tail_size:
            del self._tail[: -self._tail_size]

    def result(self) -> tuple[str, int, bool]:
        """The text, the true byte count and whether anything was dropped."""
        if self.total <= self.limit:
            return _decode(self._head + self._tail), self.total, False
        tail = self._tail[-self._tail_size :]
        omitted = self.total - len(self._head) - len(tail)
        text = f"{_decode(self._head)}\n... [{omitted} bytes omitted] ...\n{_decode(tail)}"
        return text, self.total, True


class _Backstop(Exception):
    """The output stream outlived the time limit by more than the margin."""


def _frames(sock: Any, deadline: float) -> Iterator[tuple[int, bytes]]:
    """Yield (stream, bytes) from Docker's multiplexed stream: 8-byte headers, then payloads."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while True:
            header = _read_exactly(sock, selector, 8, deadline)
            if len(header) < 8:
                return
            stream, size = header[0], int.from_bytes(header[4:8], "big")
            while size > 0:
                chunk = _read_some(sock, selector, min(size, 65536), deadline)
                if not chunk:
                    return
                size -= len(chunk)
                yield stream, chunk


def _read_exactly(sock: Any, selector: selectors.BaseSelector, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        chunk = _read_some(sock, selector, n - len(data), deadline)
        if not chunk:
            break
        data += chunk
    return data


def _read_some(sock: Any, selector: selectors.BaseSelector, n: int, deadline: float) -> bytes:
    """Read up to n bytes, waiting no later than `deadline`; b"" at end of stream."""
    # TLS sockets can hold decrypted bytes that select() cannot see.
    pending = getattr(sock, "pending", None)
    while not (pending and pending()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Backstop
        if selector.select(remaining):
            break
    data = sock.recv(n) if hasattr(sock, "recv") else sock.read(n)
    return data or b""


def _close(sock: Any) -> None:
    # The SDK keeps the HTTP response on the socket; close both or the fd leaks.
    response = getattr(sock, "_response", None)
    for closable in (response, sock):
        if closable is not None:
            # ValueError: the socket was already closed underneath the response.
            with contextlib.suppress(OSError, ValueError):
                closable.close()


def _remove(container: Container) -> bool:
    """Force-remove a container; False if it was already gone."""
    try:
        container.remove(force=True)
    except NotFound:
        return False
    except DockerFailure as e:
        # Removal already in progress counts as gone.
        if "already in progress" in str(e):
            return False
        raise SandboxError(
            f"cannot remove sandbox container {container.short_id}: {one_line(e)}",
            "check the Docker engine",
        ) from e
    return True


def _parse_meta(meta: bytes) -> tuple[bool | None, bool]:
    """(timed_out, oom_killed) from the wrapper's report; timed_out None without one."""
    found = _META.findall(meta.decode("ascii", errors="replace"))
    if not found:
        return None, False
    fired, before, after = found[-1]
    oom = bool(before and after and int(after) > int(before))
    return fired == "1", oom


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")

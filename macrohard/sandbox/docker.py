"""The Docker sandbox: the one module that runs containers through the docker SDK.

Each sandbox is one long-lived, hardened container with a host directory
bind-mounted at /workspace. Its command is `sleep infinity` under Docker's init, both
running as a uid other than the sandbox user's, so no command can kill them. Commands
run through a runner (runner.py) that one `docker exec` starts per sandbox and that
stays attached: it enforces time limits inside the container, because ending the
client side of an exec does not stop the process, and it saves the ~60 ms of a
`docker exec` per command. If the runner dies or stops answering, the container is
restarted, which ends every process in it, and a new runner is started.

The workdir must exist on the machine that runs the Docker engine: with a remote
DOCKER_HOST, bind mounts name paths on that machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
from docker.errors import NotFound
from docker.models.containers import Container
from pydantic import BaseModel, ValidationError

from macrohard.config import SandboxSettings, size_bytes
from macrohard.errors import SandboxError
from macrohard.sandbox import lifecycle, runner
from macrohard.sandbox.access import sandbox_user
from macrohard.sandbox.base import ExecResult
from macrohard.sandbox.channel import META_LIMIT, Backstop, Channel, RunnerLost, render
from macrohard.sandbox.image import DockerFailure, image_exists, one_line

SANDBOX_LABEL = "macrohard.sandbox"
OWNER_LABEL = lifecycle.OWNER_LABEL
WORKSPACE = "/workspace"
OUTPUT = "/output"  # a verdict's report folder: the only writable mount of a read-only sandbox
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
# The container's init and keep-alive run as this uid (nobody), which the sandbox
# user cannot signal: a command that kills everything it can leaves them standing.
KEEP_ALIVE_UID = 65534
KILL_GRACE_S = 2.0  # between the time limit's SIGTERM and its SIGKILL
DRAIN_S = 0.5  # how long background processes may hold a finished command's output
# The client's own deadline beyond limit + grace, for a runner that fails to stop a
# command: it covers the runner's cleanup and the drain.
BACKSTOP_MARGIN_S = 10.0
RUNNER_START_S = 30.0
BUILD_HINT = "run `macrohard sandbox build`"
RUNNER_HINT = "the sandbox image needs python3 (3.8 or later) on its PATH; `macrohard sandbox doctor` checks an image"
RUNNER_SOURCE = Path(runner.__file__).read_bytes()
RUNNER_COMMAND = ["python3", "-I", "-S", "-c", runner.BOOTSTRAP, runner.SANDBOX_FLAG]


class SandboxWeakenedWarning(UserWarning):
    """A sandbox setting is weaker than the hardened default."""


class RunnerHello(BaseModel):
    pid: int
    uid: int
    sandboxed: bool  # whether the runner may end processes that escaped a command


class RunnerRequest(BaseModel):
    command: str
    timeout: float
    grace: float
    drain: float
    limit: int


class RunnerAnswer(BaseModel):
    exit_code: int
    timed_out: bool
    oom_killed: bool
    total: int
    head: int
    notes: list[str] = []


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
    """Starts hardened sandbox containers, and removes them and the leftovers of crashed runs."""

    def __init__(
        self,
        settings: SandboxSettings,
        client: docker.DockerClient | None = None,
        *,
        cleanup_on_exit: bool = True,
    ) -> None:
        self.settings = settings
        self._client = client
        self._live: dict[str, DockerSandbox] = {}
        self._lock = threading.RLock()  # RLock: a signal handler may run inside a holder
        for weakness in settings.weakened():
            warnings.warn(f"sandbox hardening weakened: {weakness}", SandboxWeakenedWarning, stacklevel=2)
        if cleanup_on_exit:
            lifecycle.register(self)

    @property
    def client(self) -> docker.DockerClient:
        # Connect on first use, so a provider can be built where no engine runs.
        if self._client is None:
            self._client = docker_client()
        return self._client

    def start(
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None
    ) -> DockerSandbox:
        """Start a container with `workdir` mounted at /workspace (read-write unless read_only),
        and output_dir, if given, read-write at /output; ready for commands."""
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(f"sandbox workdir {workdir} is not a directory", "create it first")
        output = Path(output_dir).resolve() if output_dir is not None else None
        if output is not None and not output.is_dir():
            raise SandboxError(f"sandbox output folder {output} is not a directory", "create it first")
        image = self.settings.image
        if not image_exists(self.client, image):
            raise SandboxError(f"sandbox image {image} is missing", BUILD_HINT)
        writable = tuple(p for p in (None if read_only else workdir, output) if p is not None)
        user = sandbox_user(workdir, self.settings.unprivileged_uid, self.settings.allow_root, writable)
        volumes = _volumes(workdir, read_only, output)
        container = self._create(image, self._run_options(volumes, user, labels))
        sandbox = DockerSandbox(self.client, container, self.settings, workdir, user, on_stop=self._forget)
        sandbox.output_path = OUTPUT if output is not None else ""
        with self._lock:
            self._live[sandbox.id] = sandbox
        try:
            sandbox.start_runner()
        except BaseException:
            sandbox.stop()
            raise
        return sandbox

    def prune(self, labels: dict[str, str] | None = None) -> int:
        """Force-remove every sandbox container matching `labels`, whoever owns it; return how many."""
        return sum(_remove_id(self.client, c["Id"]) for c in self._list(labels))

    def prune_orphans(self, labels: dict[str, str] | None = None) -> int:
        """Remove the sandbox containers (matching `labels`) whose owning process on this host is gone.

        Containers of live processes, of other hosts and without an owner label are kept.
        """
        orphans = [
            c["Id"]
            for c in self._list(labels)
            if lifecycle.owner_alive((c.get("Labels") or {}).get(OWNER_LABEL)) is False
        ]
        return sum(_remove_id(self.client, container_id) for container_id in orphans)

    def close(self) -> int:
        """Remove every sandbox this provider started and has not stopped; return how many."""
        with self._lock:
            live = list(self._live.values())
        for sandbox in live:
            sandbox.stop()
        return len(live)

    def close_from_signal(self) -> None:
        """close() for a signal handler: no locks, and a fresh client (the interrupted
        code may be in the middle of a request on ours)."""
        ids = list(self._live)
        if not ids:
            return
        try:
            client = docker.from_env()
        except DockerFailure:
            client = self.client
        for container_id in ids:
            with contextlib.suppress(Exception):
                _remove_id(client, container_id)

    def _forget(self, sandbox: DockerSandbox) -> None:
        with self._lock:
            self._live.pop(sandbox.id, None)

    def _list(self, labels: dict[str, str] | None) -> list[dict[str, Any]]:
        wanted = {**(labels or {}), SANDBOX_LABEL: "1"}
        filters = {"label": [f"{k}={v}" for k, v in wanted.items()]}
        try:
            return list(self.client.api.containers(all=True, filters=filters))
        except DockerFailure as e:
            raise SandboxError(
                f"cannot list sandbox containers: {one_line(e)}", "check the Docker engine"
            ) from e

    def _create(self, image: str, options: dict[str, Any]) -> Container:
        try:
            container = self.client.containers.create(image, **options)
        except DockerFailure as e:
            raise SandboxError(
                f"cannot start a sandbox from {image}: {one_line(e)}",
                f"check the Docker engine, or rebuild the image ({BUILD_HINT})",
            ) from e
        try:
            container.start()
        except DockerFailure as e:
            _remove_id(self.client, str(container.id))
            raise SandboxError(
                f"cannot start a sandbox from {image}: {one_line(e)}",
                "check the Docker engine and the [sandbox] settings (`macrohard sandbox doctor`)",
            ) from e
        return container

    def _run_options(self, volumes: dict[str, dict[str, str]], user: str, labels: dict[str, str]) -> dict[str, Any]:
        s = self.settings
        keep = KEEP_ALIVE_UID if user.split(":")[0] != str(KEEP_ALIVE_UID) else KEEP_ALIVE_UID - 1
        tmpfs = size_bytes(s.tmpfs_size)
        options: dict[str, Any] = {
            "command": ["sleep", "infinity"],
            "name": f"macrohard-sandbox-{uuid.uuid4().hex[:12]}",
            "hostname": "sandbox",
            "user": f"{keep}:{keep}",
            "environment": dict(SANDBOX_ENV),
            "labels": {**labels, SANDBOX_LABEL: "1", OWNER_LABEL: lifecycle.owner_id()},
            "volumes": volumes,
            # The keep-alive's uid may not be allowed into the workdir; commands get
            # /workspace as their working directory from the runner's exec.
            "working_dir": "/",
            "network_mode": "bridge" if s.network else "none",
            "cap_drop": ["ALL"],
            "cap_add": s.cap_add or None,
            "security_opt": ["no-new-privileges"] if s.no_new_privileges else [],
            "read_only": s.read_only,
            # exec: test suites run helpers they write to their tmp dirs, and
            # /workspace is executable anyway.
            "tmpfs": {"/tmp": f"size={s.tmpfs_size},mode=1777,exec"},
            "init": s.init,
        }
        if tmpfs:
            options["shm_size"] = tmpfs  # /dev/shm is the other writable tmpfs
        if size_bytes(s.memory):
            options["mem_limit"] = options["memswap_limit"] = s.memory
        if s.pids_limit:
            options["pids_limit"] = s.pids_limit
        if s.cpus:
            options["nano_cpus"] = int(s.cpus * 1e9)
        return options


def _volumes(workdir: Path, read_only: bool = False, output: Path | None = None) -> dict[str, dict[str, str]]:
    # .git (a worktree's pointer file, or the repository itself for main) is mounted
    # read-only over the writable workspace: git on the host runs commands that a
    # repository's config names (core.fsmonitor, hooks), so sandboxed code must not
    # be able to write that config or point the worktree at one of its own.
    volumes = {str(workdir): {"bind": WORKSPACE, "mode": "ro" if read_only else "rw"}}
    if output is not None:
        volumes[str(output)] = {"bind": OUTPUT, "mode": "rw"}
    if not read_only and (workdir / ".git").exists():
        volumes[str(workdir / ".git")] = {"bind": f"{WORKSPACE}/.git", "mode": "ro"}
    return volumes


class DockerSandbox:
    """One running sandbox container. Use as a context manager, or call stop()."""

    def __init__(
        self,
        client: docker.DockerClient,
        container: Container,
        settings: SandboxSettings,
        workdir: Path,
        user: str,
        on_stop: Callable[[DockerSandbox], None] | None = None,
    ) -> None:
        self._client = client
        self._container = container
        self.settings = settings
        self.workdir = workdir
        self.user = user  # uid:gid that commands run as
        self._on_stop = on_stop
        self._channel: Channel | None = None
        self._lock = threading.Lock()  # one command at a time: the runner is sequential
        self._stopped = False
        self._paused = False
        self.output_path = ""
        self.restarts = 0
        self.contained = False  # the runner can end processes that escape a command

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
        if self._stopped:
            return
        # No lock: stop() must work while a command runs, and from a signal handler.
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        _remove_id(self._client, self.id)
        self._stopped = True
        if self._on_stop is not None:
            self._on_stop(self)

    def pause(self) -> None:
        """Freeze every process in the container (the cgroup freezer), so nothing in it can
        change its files while host git reads them."""
        with self._lock:  # not in the middle of a command: its answer would wait on the freeze
            if self._stopped or self._paused:
                return
            try:
                self._client.api.pause(self.id)
            except DockerFailure as e:
                raise SandboxError(
                    f"cannot pause sandbox {self.name}: {one_line(e)}", "check the Docker engine (cgroup freezer)"
                ) from e
            self._paused = True

    def unpause(self) -> None:
        with self._lock:
            if self._stopped or not self._paused:
                return
            try:
                self._client.api.unpause(self.id)
            except DockerFailure as e:
                raise SandboxError(f"cannot unpause sandbox {self.name}: {one_line(e)}", "check the Docker engine") from e
            self._paused = False

    def start_runner(self) -> None:
        """Start the command runner now rather than with the first command."""
        with self._lock:
            self._runner(recover=False)

    def exec(self, command: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run `command` with sh in /workspace, stdout and stderr combined.

        A timeout ends every process in the sandbox, not only this command's. Processes
        the command leaves running that still hold its output are ended half a second
        after it finishes; redirect their stdout and stderr to keep them.
        """
        limit = self.settings.timeout_s if timeout_s is None else timeout_s
        if limit <= 0:
            raise ValueError(f"timeout_s must be positive, got {limit}")
        with self._lock:
            if self._stopped:
                raise SandboxError(f"sandbox {self.name} is stopped", "start a new sandbox")
            started = time.monotonic()
            channel = self._runner(recover=True)
            request = RunnerRequest(
                command=command,
                timeout=limit,
                grace=KILL_GRACE_S,
                drain=DRAIN_S,
                limit=self.settings.output_limit_bytes,
            )
            deadline = started + limit + KILL_GRACE_S + BACKSTOP_MARGIN_S
            try:
                channel.send(request.model_dump_json().encode() + b"\n")
                data, answer = self._answer(channel, deadline)
            except Backstop:
                return self._lost(command, started, timed_out=True)
            except (RunnerLost, OSError):
                return self._lost(command, started, timed_out=False)
        text, truncated = render(data[: answer.head], data[answer.head :], answer.total)
        text += "".join(f"\n[macrohard: {note}]\n" for note in answer.notes)
        return ExecResult(
            command=command,
            exit_code=answer.exit_code,
            duration_s=time.monotonic() - started,
            output=text,
            output_bytes=answer.total,
            truncated=truncated,
            timed_out=answer.timed_out,
            oom_killed=answer.oom_killed,
        )

    def _answer(self, channel: Channel, deadline: float) -> tuple[bytes, RunnerAnswer]:
        limit = self.settings.output_limit_bytes
        data = b""
        while True:
            kind, payload = channel.frame(deadline, max(limit, META_LIMIT))
            if kind == runner.OUTPUT:
                data = payload
            elif kind == runner.RESULT:
                try:
                    answer = RunnerAnswer.model_validate_json(payload)
                except ValidationError as e:
                    raise RunnerLost(f"unreadable answer: {one_line(e)}") from e
                if answer.head > len(data) or answer.total < len(data):
                    raise RunnerLost("inconsistent answer")
                return data, answer
            elif kind == runner.ERROR:
                raise SandboxError(
                    f"the runner in sandbox {self.name} refused a command: {one_line(payload)}",
                    "this is a bug in macrohard; please report it",
                )

    def _runner(self, *, recover: bool) -> Channel:
        """The runner's channel, starting a runner (and with `recover`, restarting the container) if needed."""
        if self._channel is not None and self._channel.alive():
            return self._channel
        self._drop_channel()
        try:
            self._channel = self._start_runner()
        except RunnerLost as e:
            if not recover:
                raise self._runner_error(e) from e
            self._restart()
            try:
                self._channel = self._start_runner()
            except RunnerLost as again:
                raise self._runner_error(again) from again
        return self._channel

    def _start_runner(self) -> Channel:
        api = self._client.api
        try:
            exec_id = api.exec_create(
                self.id, RUNNER_COMMAND, stdin=True, stdout=True, stderr=True, tty=False,
                user=self.user, workdir=WORKSPACE,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True, tty=False)
        except DockerFailure as e:
            raise RunnerLost(one_line(e)) from e
        channel = Channel(sock)
        try:
            channel.send(b"%d\n%s" % (len(RUNNER_SOURCE), RUNNER_SOURCE))
            kind, payload = channel.frame(time.monotonic() + RUNNER_START_S, META_LIMIT)
            if kind != runner.HELLO:
                raise RunnerLost(f"unexpected first frame {kind!r}")
            self.contained = RunnerHello.model_validate_json(payload).sandboxed
        except (RunnerLost, Backstop, ValidationError, OSError) as e:
            detail = channel.stderr() or str(e) or type(e).__name__
            channel.close()
            raise RunnerLost(detail) from e
        return channel

    def _runner_error(self, e: RunnerLost) -> SandboxError:
        if not self._running():
            return SandboxError(
                f"sandbox {self.name} is no longer running", "start a new sandbox; check the Docker engine"
            )
        return SandboxError(f"the command runner does not start in sandbox {self.name}: {e}", RUNNER_HINT)

    def _lost(self, command: str, started: float, *, timed_out: bool) -> ExecResult:
        """The runner died or stopped answering mid-command: restart the container, which ends
        every process in it, and report what is known."""
        self._restart()
        why = (
            "the command outlived its time limit and the sandbox's runner did not end it"
            if timed_out
            else "the sandbox's command runner died while the command ran (did the command kill it?)"
        )
        note = f"[macrohard: {why}; the sandbox was restarted, which ended every process in it]\n"
        return ExecResult(
            command=command,
            exit_code=124 if timed_out else -1,
            duration_s=time.monotonic() - started,
            output=note,
            output_bytes=0,
            timed_out=timed_out,
        )

    def _restart(self) -> None:
        self._drop_channel()
        try:
            self._container.restart(timeout=0)
        except DockerFailure as e:
            if self._stopped:
                raise SandboxError(f"sandbox {self.name} is stopped", "start a new sandbox") from e
            raise SandboxError(
                f"cannot restart sandbox {self.name}: {one_line(e)}", "start a new sandbox; check the Docker engine"
            ) from e
        self.restarts += 1

    def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _running(self) -> bool:
        try:
            self._container.reload()
        except DockerFailure:
            return False
        return bool(self._container.status == "running")


def _remove_id(client: docker.DockerClient, container_id: str) -> bool:
    """Force-remove a container; False if it was already gone."""
    try:
        client.api.remove_container(container_id, force=True)
    except NotFound:
        return False
    except DockerFailure as e:
        # Removal already in progress counts as gone.
        if "already in progress" in str(e):
            return False
        raise SandboxError(
            f"cannot remove sandbox container {container_id[:12]}: {one_line(e)}",
            "check the Docker engine",
        ) from e
    return True

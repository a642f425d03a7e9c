"""One sandbox container and the command runner inside it (part of the Docker adapter).

Commands run through a runner (runner.py) that one `docker exec` starts per sandbox and
that stays attached: it enforces time limits inside the container, because ending the
client side of an exec does not stop the process, and it saves the ~60 ms of a
`docker exec` per command. If the runner dies or stops answering, the container is
restarted, which ends every process in it, and a new runner is started. Containers are
created by DockerSandboxProvider in docker.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import docker
from docker.errors import NotFound
from docker.models.containers import Container
from pydantic import BaseModel, ValidationError

from macrohard.config import SandboxSettings
from macrohard.errors import SandboxError
from macrohard.sandbox import runner
from macrohard.sandbox.base import ExecResult
from macrohard.sandbox.channel import META_LIMIT, Backstop, Channel, RunnerLost, render
from macrohard.sandbox.image import DockerFailure, one_line

WORKSPACE = "/workspace"
OUTPUT = "/output"  # a verdict's report folder: the only writable mount of a read-only sandbox
KILL_GRACE_S = 2.0  # between the time limit's SIGTERM and its SIGKILL
DRAIN_S = 0.5  # how long background processes may hold a finished command's output
# The client's own deadline beyond limit + grace, for a runner that fails to stop a
# command: it covers the runner's cleanup and the drain.
BACKSTOP_MARGIN_S = 10.0
RUNNER_START_S = 30.0
RUNNER_HINT = "the sandbox image needs python3 (3.8 or later) on its PATH; `macrohard sandbox doctor` checks an image"
RUNNER_SOURCE = Path(runner.__file__).read_bytes()
RUNNER_COMMAND = ["python3", "-I", "-S", "-c", runner.BOOTSTRAP, runner.SANDBOX_FLAG]


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
    warm: bool = False  # start it now, held until the next request for the same command


class RunnerAnswer(BaseModel):
    exit_code: int
    timed_out: bool
    oom_killed: bool
    total: int
    head: int
    notes: list[str] = []
    warmed: bool = False


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

    def idle(self) -> bool:
        """Whether no process of the sandbox's own is left (besides the command runner).

        Then nothing in it can change a file until exec() starts a command: host git may
        read the workspace without freezing the container. Any doubt (no runner, no
        answer) is a no.
        """
        with self._lock:
            if self._stopped or self._paused or self._channel is None or not self._channel.alive():
                return False
            try:
                self._channel.send(b'{"probe": "idle"}\n')
                kind, payload = self._channel.frame(time.monotonic() + RUNNER_START_S, META_LIMIT)
                return kind == runner.RESULT and json.loads(payload).get("idle") is True
            except (RunnerLost, Backstop, OSError, ValueError):
                self._drop_channel()
                return False

    def end_processes(self, *, keep_warm: bool = False) -> None:
        """End every process the sandbox's commands left running (it is set aside, to be removed
        later); `keep_warm`: except warm commands still waiting for their exec."""
        with self._lock:
            if self._stopped or self._paused or self._channel is None or not self._channel.alive():
                return
            try:
                self._channel.send(b'{"probe": "end", "keep_warm": true}\n' if keep_warm else b'{"probe": "end"}\n')
                self._channel.frame(time.monotonic() + RUNNER_START_S, META_LIMIT)
            except (RunnerLost, Backstop, OSError):
                self._drop_channel()

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

    def warm(self, command: str) -> None:
        """Start `command` now, held until exec() asks for the same command (see runner.py).

        Only for a command that reads one line of input before it looks at the workspace.
        A warm start that fails is forgotten: the exec then runs the command afresh.
        """
        with self._lock:
            if self._stopped or self._paused:
                return
            try:
                channel = self._runner(recover=False)
                request = RunnerRequest(command=command, timeout=self.settings.timeout_s, grace=KILL_GRACE_S,
                                        drain=DRAIN_S, limit=self.settings.output_limit_bytes, warm=True)
                channel.send(request.model_dump_json().encode() + b"\n")
                self._answer(channel, time.monotonic() + RUNNER_START_S)
            except (SandboxError, RunnerLost, Backstop, OSError):
                self._drop_channel()

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

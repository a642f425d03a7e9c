"""The smoke check of a product image on the Docker engine (part of the Docker adapter).

The image runs as the sandboxes run: no capabilities, no new privileges, a read-only
root with a small /tmp, memory, CPU and process limits, never as root, and removed
afterwards. A command-line tool or library gets no network; a service gets a fresh
internal network (no route out) shared only with a probe container from the sandbox
image, which asks its health endpoint until it answers or time runs out.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Any

import docker
import requests
from docker.errors import NotFound
from docker.models.containers import Container

from macrohard.config import SandboxSettings
from macrohard.deploy.dockerfile import is_root
from macrohard.errors import SandboxError
from macrohard.models import RunSpec
from macrohard.sandbox import lifecycle
from macrohard.sandbox.base import SmokeResult
from macrohard.sandbox.container import _remove_id
from macrohard.sandbox.docker import SANDBOX_LABEL, resource_limits  # smoke containers are sandboxes: prune and a run's end remove them
from macrohard.sandbox.image import DockerFailure, one_line

NOBODY = "65534:65534"
POLL_S = 0.25
PROBE = """
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
last = "no answer"
while time.monotonic() < deadline:
    try:
        with opener.open(url, timeout=2) as answer:
            print(f"{url} answered {answer.status}")
            sys.exit(0)
    except urllib.error.HTTPError as e:
        last = f"HTTP {e.code}"
    except Exception as e:
        last = f"{type(e).__name__}: {e}"
    time.sleep(0.3)
print(f"{url} never answered below 400: {last}")
sys.exit(1)
"""


class DockerSmoke:
    """Runs one product image's smoke check, hardened."""

    def __init__(self, client: docker.DockerClient, settings: SandboxSettings) -> None:
        self.client = client
        self.settings = settings

    def run(self, image_id: str, run: RunSpec, *, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        user = self._user(image_id)
        started = time.monotonic()
        try:
            if run.kind == "service":
                return self._service(image_id, run, user, labels, timeout_s)
            return self._command(image_id, run, user, labels, timeout_s)
        except NotStarted as e:
            # The engine refused the image's configuration (a USER it does not have...): the image's fault.
            return SmokeResult(passed=False, output=e.detail, reason=f"its container did not start: {one_line(e.detail)}",
                               duration_s=time.monotonic() - started)

    def _command(self, image_id: str, run: RunSpec, user: str, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        started = time.monotonic()
        container = self._start(image_id, ["/bin/sh", "-c"], [run.command], user, labels, network="none")
        try:
            exit_code, timed_out = self._wait(container, timeout_s)
            output = self._logs(container)
        finally:
            _remove_id(self.client, str(container.id))
        passed = exit_code == 0 and not timed_out
        reason = "" if passed else (f"it did not end within {timeout_s:g}s" if timed_out else f"it exited with code {exit_code}")
        return SmokeResult(passed=passed, exit_code=None if timed_out else exit_code, timed_out=timed_out,
                           output=output, reason=reason, duration_s=time.monotonic() - started)

    def _service(self, image_id: str, run: RunSpec, user: str, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        started = time.monotonic()
        name = f"macrohard-smoke-{uuid.uuid4().hex[:12]}"
        url = f"http://{name}:{run.port}{run.health_path}"
        try:
            network = self.client.networks.create(
                name, driver="bridge", internal=True, labels={**labels, SANDBOX_LABEL: "1"}
            )
        except DockerFailure as e:
            raise engine_error("cannot create the smoke check's internal network", e) from e
        containers: list[Container] = []
        try:
            service = self._start(image_id, ["/bin/sh", "-c"], [run.command], user, labels, network=name, name=name)
            containers.append(service)
            probe = self._start(self.settings.image, ["python3", "-I", "-c", PROBE, url, f"{timeout_s:g}"], None,
                                NOBODY, labels, network=name)
            containers.append(probe)
            passed, exit_code, timed_out, why = self._watch(service, probe, timeout_s + 5)
            output = f"-- the service's output --\n{self._logs(service)}\n-- the probe --\n{self._logs(probe)}"
        finally:
            for container in containers:
                _remove_id(self.client, str(container.id))
            try:
                network.remove()
            except NotFound:
                pass
            except DockerFailure as e:
                raise engine_error(f"cannot remove the smoke check's network {name}", e) from e
        return SmokeResult(passed=passed, exit_code=exit_code, timed_out=timed_out, output=output, reason=why,
                           health_url=url, duration_s=time.monotonic() - started)

    def _watch(self, service: Container, probe: Container, limit_s: float) -> tuple[bool, int | None, bool, str]:
        """(passed, the probe's exit code, timed out, why not) once the probe ends, the service dies or time runs out."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            probe_state, service_state = self._state(probe), self._state(service)
            if probe_state.get("Status") == "exited":
                code = int(probe_state.get("ExitCode", -1))
                return code == 0, code, False, "" if code == 0 else "its health endpoint never answered below 400"
            if service_state.get("Status") == "exited":
                code = int(service_state.get("ExitCode", -1))
                return False, None, False, f"the service exited with code {code} before its health endpoint answered"
            time.sleep(POLL_S)
        return False, None, True, f"its health endpoint did not answer within {limit_s:g}s"

    def _state(self, container: Container) -> dict[str, Any]:
        try:
            return dict(self.client.api.inspect_container(container.id).get("State") or {})
        except DockerFailure as e:
            raise engine_error("cannot inspect a smoke check container", e) from e

    def _user(self, image_id: str) -> str:
        """The image's own user, unless it would be root: the smoke check never runs as root."""
        try:
            config = self.client.api.inspect_image(image_id).get("Config") or {}
        except DockerFailure as e:
            raise engine_error(f"cannot inspect image {image_id[:19]}", e) from e
        user = str(config.get("User") or "").strip()
        return NOBODY if not user or is_root(user) else user

    def _start(
        self, image: str, entrypoint: list[str], command: list[str] | None, user: str, labels: dict[str, str],
        *, network: str, name: str | None = None,
    ) -> Container:
        s = self.settings
        options: dict[str, Any] = {
            "entrypoint": entrypoint,
            "command": command,
            "name": name or f"macrohard-smoke-{uuid.uuid4().hex[:12]}",
            "user": user,
            "labels": {**labels, SANDBOX_LABEL: "1", lifecycle.OWNER_LABEL: lifecycle.owner_id()},
            "network_mode": network if network == "none" else None,
            "network": None if network == "none" else network,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": {"/tmp": f"size={s.tmpfs_size},mode=1777"},
            "environment": {"HOME": "/tmp"},
            "init": True,
        }
        options = {k: v for k, v in {**options, **resource_limits(s)}.items() if v is not None}
        try:
            container = self.client.containers.create(image, **options)
        except DockerFailure as e:
            raise engine_error(f"cannot create a smoke check container from {image[:19]}", e) from e
        try:
            container.start()
        except DockerFailure as e:
            _remove_id(self.client, str(container.id))
            if isinstance(getattr(getattr(e, "response", None), "status_code", None), int):
                raise NotStarted(str(getattr(e, "explanation", None) or e)) from e  # the engine answered: it refuses
            raise engine_error(f"cannot start a smoke check container from {image[:19]}", e) from e
        return container

    def _wait(self, container: Container, timeout_s: float) -> tuple[int | None, bool]:
        try:
            answer = self.client.api.wait(container.id, timeout=timeout_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            try:
                self.client.api.kill(container.id)
            except DockerFailure:
                pass  # it ended meanwhile
            return None, True
        except DockerFailure as e:
            raise engine_error("cannot wait for a smoke check container", e) from e
        return int(answer.get("StatusCode", -1)), False

    def _logs(self, container: Container) -> str:
        tail = Tail(self.settings.output_limit_bytes)
        try:
            for chunk in self.client.api.logs(container.id, stdout=True, stderr=True, stream=True, follow=False):
                tail.add(chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else str(chunk))
        except DockerFailure as e:
            return f"(its output could not be read: {one_line(e)})"
        return tail.text()


class NotStarted(Exception):
    """The engine would not start a container of the image (its configuration, not the engine, is at fault)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Tail:
    """The last `limit` characters of a stream, and how much went by."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.parts: deque[str] = deque()
        self.kept = 0
        self.total = 0

    def add(self, text: str) -> None:
        if not text:
            return
        self.total += len(text.encode())
        self.parts.append(text)
        self.kept += len(text)
        while self.kept - len(self.parts[0]) >= self.limit:
            self.kept -= len(self.parts.popleft())

    def text(self) -> str:
        joined = "".join(self.parts)
        return joined[-self.limit:]


def engine_error(what: str, e: BaseException) -> SandboxError:
    return SandboxError(f"{what}: {one_line(e)}", "check that the Docker engine is running and has disk space")

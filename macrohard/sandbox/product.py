"""Product images on the Docker engine (part of the Docker adapter): built offline, smoke-checked hardened.

The build context is a tar this module makes of an exported tree (its .dockerignore
applied) plus the Dockerfile the orchestrator checked and rendered, under a name no
tree holds; the engine builds it with no network and pulls nothing. The smoke check runs
the image as the sandboxes run: no capabilities, no new privileges, a read-only root with
a small /tmp, memory, CPU and process limits, never as root, and removed afterwards.
A command-line tool or library gets no network; a service gets a fresh internal network
(no route out) shared only with a probe container from the sandbox image, which asks
its health endpoint until it answers or time runs out.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import docker
import requests
from docker.errors import ImageNotFound, NotFound
from docker.models.containers import Container
from docker.utils.build import create_archive, exclude_paths

from macrohard.config import SandboxSettings, size_bytes
from macrohard.errors import SandboxError
from macrohard.models import RunSpec
from macrohard.sandbox import lifecycle
from macrohard.sandbox.base import ImageBuild, ProductImage, SmokeResult
from macrohard.sandbox.container import _remove_id
from macrohard.sandbox.image import DockerFailure, one_line

SANDBOX_LABEL = "macrohard.sandbox"  # smoke containers are sandboxes: `sandbox prune` and a run's end remove them
PRODUCT_LABEL = "macrohard.product-image"
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


class DockerProductImages:
    """ProductImages on the engine DOCKER_HOST names; the sandbox settings give the base image and limits."""

    def __init__(self, settings: SandboxSettings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from macrohard.sandbox.docker import docker_client

            self._client = docker_client()
        return self._client

    # -- images ----------------------------------------------------------------

    def find(self, labels: dict[str, str]) -> list[ProductImage]:
        wanted = {**labels, PRODUCT_LABEL: "1"}
        try:
            found = self.client.api.images(filters={"label": [f"{k}={v}" for k, v in wanted.items()]})
        except DockerFailure as e:
            raise _engine("cannot list product images", e) from e
        images = [
            ProductImage(id=str(i["Id"]), tags=[t for t in i.get("RepoTags") or [] if t != "<none>:<none>"],
                         labels=dict(i.get("Labels") or {}), created=_when(i.get("Created")))
            for i in found
        ]
        return sorted(images, key=lambda i: i.created, reverse=True)

    def build(self, context: Path, dockerfile: str, *, tag: str, labels: dict[str, str]) -> ImageBuild:
        started = time.monotonic()
        name = f".macrohard-dockerfile-{uuid.uuid4().hex}"  # no tree holds it: the checked file is the one built
        log = _Tail(self.settings.output_limit_bytes)
        image_id: str | None = None
        error: str | None = None
        # One LABEL instruction: the engine's `labels` option makes a build step (a container) per label.
        every = {**labels, lifecycle.OWNER_LABEL: lifecycle.owner_id()}
        labelled = dockerfile.rstrip("\n") + "\nLABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(every.items()))
        with tempfile.TemporaryFile() as tar:
            _context_tar(context, name, labelled + "\n", tar)
            try:
                chunks: Iterable[dict[str, Any]] = self.client.api.build(
                    fileobj=tar, custom_context=True, dockerfile=name, tag=tag,
                    network_mode="none", pull=False, rm=True, forcerm=True, decode=True,
                )
                for chunk in chunks:
                    if "error" in chunk:
                        error = one_line(chunk["error"])
                        log.add(f"{chunk['error']}\n")
                    log.add(str(chunk.get("stream") or ""))
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = str(aux["ID"])
            except DockerFailure as e:
                if not _is_build_error(e):
                    raise _engine(f"cannot build {tag}", e) from e
                error = one_line(e)
                log.add(f"{e}\n")
        if error is None and image_id is None:
            error = "the engine reported no image"
        return ImageBuild(image_id=None if error else image_id, error=error, log=log.text(), log_bytes=log.total,
                          duration_s=time.monotonic() - started)

    def tag(self, image_id: str, tag: str) -> None:
        repository, _, version = tag.rpartition(":")
        try:
            self.client.api.tag(image_id, repository, version, force=True)
        except DockerFailure as e:
            raise _engine(f"cannot tag {image_id[:19]} as {tag}", e) from e

    def remove(self, labels: dict[str, str]) -> list[ProductImage]:
        removed = []
        for image in self.find(labels):
            try:
                self.client.api.remove_image(image.id, force=True)
            except (NotFound, ImageNotFound):
                continue
            except DockerFailure as e:
                raise _engine(f"cannot remove product image {image.id[:19]}", e) from e
            removed.append(image)
        return removed

    # -- smoke check -------------------------------------------------------------

    def smoke(self, image_id: str, run: RunSpec, *, labels: dict[str, str], timeout_s: float) -> SmokeResult:
        user = self._user(image_id)
        if run.kind == "service":
            return self._service(image_id, run, user, labels, timeout_s)
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
            raise _engine("cannot create the smoke check's internal network", e) from e
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
                raise _engine(f"cannot remove the smoke check's network {name}", e) from e
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
            raise _engine("cannot inspect a smoke check container", e) from e

    def _user(self, image_id: str) -> str:
        """The image's own user, unless it would be root: the smoke check never runs as root."""
        try:
            config = self.client.api.inspect_image(image_id).get("Config") or {}
        except DockerFailure as e:
            raise _engine(f"cannot inspect image {image_id[:19]}", e) from e
        user = str(config.get("User") or "").strip()
        return NOBODY if user.split(":")[0] in ("", "0", "root") else user

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
        if size_bytes(s.memory):
            options["mem_limit"] = options["memswap_limit"] = s.memory
        if s.pids_limit:
            options["pids_limit"] = s.pids_limit
        if s.cpus:
            options["nano_cpus"] = int(s.cpus * 1e9)
        options = {k: v for k, v in options.items() if v is not None}
        try:
            container = self.client.containers.create(image, **options)
        except DockerFailure as e:
            raise _engine(f"cannot create a smoke check container from {image[:19]}", e) from e
        try:
            container.start()
        except DockerFailure as e:
            _remove_id(self.client, str(container.id))
            raise _engine(f"cannot start a smoke check container from {image[:19]}", e) from e
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
            raise _engine("cannot wait for a smoke check container", e) from e
        return int(answer.get("StatusCode", -1)), False

    def _logs(self, container: Container) -> str:
        tail = _Tail(self.settings.output_limit_bytes)
        try:
            for chunk in self.client.api.logs(container.id, stdout=True, stderr=True, stream=True, follow=False):
                tail.add(chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else str(chunk))
        except DockerFailure as e:
            return f"(its output could not be read: {one_line(e)})"
        return tail.text()


class _Tail:
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


def _context_tar(context: Path, name: str, dockerfile: str, tar: IO[bytes]) -> None:
    """The build context: context's files but those its .dockerignore names, and the Dockerfile as `name`."""
    files = sorted(p for p in exclude_paths(str(context), _ignore_patterns(context), dockerfile=name)
                   if p != ".dockerignore")
    create_archive(str(context), files=files, fileobj=tar, extra_files=[(name, dockerfile)])


def _ignore_patterns(context: Path) -> list[str]:
    """.dockerignore's patterns, read without following a link (the tree is the agents')."""
    try:
        fd = os.open(context / ".dockerignore", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(256 * 1024).decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _is_build_error(e: BaseException) -> bool:
    """An answer about the Dockerfile or context (the deployer's to fix), not an engine out of reach."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    return isinstance(status, int) and 400 <= status < 500


def _when(created: object) -> str:
    if isinstance(created, int | float):
        return datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="seconds")
    return str(created or "")


def _engine(what: str, e: BaseException) -> SandboxError:
    return SandboxError(f"{what}: {one_line(e)}", "check that the Docker engine is running and has disk space")

"""The Docker sandbox: where containers are made, through the docker SDK.

The Docker adapter is this module and container.py (one running sandbox and its
command runner); nothing else in macrohard talks to the engine about sandboxes.
Each sandbox is one long-lived, hardened container with a host directory
bind-mounted at /workspace. Its command is `sleep infinity` under Docker's init, both
running as a uid other than the sandbox user's, so no command can kill them.

The workdir must exist on the machine that runs the Docker engine: with a remote
DOCKER_HOST, bind mounts name paths on that machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
from docker.models.containers import Container

if TYPE_CHECKING:
    from macrohard.sandbox.product import DockerProductImages

from macrohard.config import SandboxSettings, size_bytes
from macrohard.errors import SandboxError
from macrohard.sandbox import lifecycle
from macrohard.sandbox.access import sandbox_user
from macrohard.sandbox.channel import render
from macrohard.sandbox.container import (
    KILL_GRACE_S,
    OUTPUT,
    RUNNER_SOURCE,
    WORKSPACE,
    DockerSandbox,
    RunnerRequest,
    _remove_id,
)
from macrohard.sandbox.base import Extras
from macrohard.sandbox.image import DockerFailure, build_stack_image, image_exists, one_line, stack_image_current
from macrohard.stacks import CACHE_DIR, DEPS_DIR, Stack

__all__ = [
    "BUILD_HINT", "KEEP_ALIVE_UID", "KILL_GRACE_S", "OUTPUT", "OWNER_LABEL", "RUNNER_SOURCE", "SANDBOX_ENV",
    "WORKSPACE", "DockerSandbox", "DockerSandboxProvider", "RunnerRequest", "SandboxWeakenedWarning",
    "docker_client", "render",
]

SANDBOX_LABEL = "macrohard.sandbox"
OWNER_LABEL = lifecycle.OWNER_LABEL
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
BUILD_HINT = "run `macrohard sandbox build`"


class SandboxWeakenedWarning(UserWarning):
    """A sandbox setting is weaker than the hardened default."""


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


def resource_limits(s: SandboxSettings) -> dict[str, Any]:
    """The engine's options for [sandbox]'s memory, process and CPU limits (0 or none: no limit); the smoke check's too."""
    options: dict[str, Any] = {}
    if size_bytes(s.memory):
        options["mem_limit"] = options["memswap_limit"] = s.memory
    if s.pids_limit:
        options["pids_limit"] = s.pids_limit
    if s.cpus:
        options["nano_cpus"] = int(s.cpus * 1e9)
    return options


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
        self, workdir: Path, *, labels: dict[str, str], read_only: bool = False, output_dir: Path | None = None,
        extras: Extras | None = None,
    ) -> DockerSandbox:
        """Start a container with `workdir` mounted at /workspace (read-write unless read_only),
        and output_dir, if given, read-write at /output; ready for commands. `extras` names the
        stack's image, the packages (read-only at /deps) and a cache (read-write at /cache)."""
        extras = extras or Extras()
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(f"sandbox workdir {workdir} is not a directory", "create it first")
        folders = {"output": output_dir, "packages": extras.deps, "cache": extras.cache}
        for what, folder in folders.items():
            if folder is not None and not Path(folder).is_dir():
                raise SandboxError(f"sandbox {what} folder {folder} is not a directory", "create it first")
        output = Path(output_dir).resolve() if output_dir is not None else None
        image = extras.image or self.settings.image
        if not image_exists(self.client, image):
            raise SandboxError(f"sandbox image {image} is missing", BUILD_HINT)
        cache = Path(extras.cache).resolve() if extras.cache is not None else None
        writable = tuple(p for p in (None if read_only else workdir, output, cache) if p is not None)
        user = sandbox_user(workdir, self.settings.unprivileged_uid, self.settings.allow_root, writable)
        volumes = _volumes(workdir, read_only, output)
        env = dict(extras.env)
        if extras.deps is not None:
            volumes[str(Path(extras.deps).resolve())] = {"bind": DEPS_DIR, "mode": "ro"}
            env["PYTHONPATH"] = DEPS_DIR
        if cache is not None:
            volumes[str(cache)] = {"bind": CACHE_DIR, "mode": "rw"}
        else:
            env = {k: v for k, v in env.items() if not v.startswith(CACHE_DIR)}  # no cache: nothing may point there
        options = self._run_options(volumes, user, labels)
        options["environment"] = {**options["environment"], **env}
        container = self._create(image, options)
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

    def ensure_image(self, stack: Stack) -> str:
        """The stack's sandbox image (or the configured one), built first if it is missing."""
        if self.settings.image != SandboxSettings().image or not stack.packages:
            return self.settings.image  # a configured image serves every stack; the base image, Python
        if not stack_image_current(self.client, stack):  # missing, or built from an older reporter
            build_stack_image(self.client, stack, self.settings.image)
        return stack.image

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

    def product_images(self) -> DockerProductImages:
        """The release's product images, on this engine and on this sandbox image."""
        from macrohard.sandbox.product import DockerProductImages

        return DockerProductImages(self.settings, self._client)

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
        return {**options, **resource_limits(s)}


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



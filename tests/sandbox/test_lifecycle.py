"""Sandboxes end with the process that started them; a crash's orphans are found by label."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from macrohard.config import SandboxSettings
from macrohard.sandbox import lifecycle
from macrohard.sandbox.docker import OWNER_LABEL, DockerSandboxProvider
from macrohard.sandbox.lifecycle import owner_alive, owner_id

# A process that starts a sandbox, says its container id, then exits or waits.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from macrohard.config import SandboxSettings
    from macrohard.sandbox.docker import DockerSandboxProvider

    workdir, labels, image, then = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    provider = DockerSandboxProvider(SandboxSettings(image=image))
    sandbox = provider.start(Path(workdir), labels=labels)
    print(sandbox.id, flush=True)
    if then == "wait":
        time.sleep(120)
    """
)


def test_owner_id_names_this_process() -> None:
    host, pid, start = owner_id().rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and int(start) > 0
    assert owner_alive(owner_id()) is True


def test_dead_reused_foreign_and_unreadable_owners() -> None:
    host, pid, start = owner_id().rsplit(":", 2)
    with subprocess.Popen(["true"]) as proc:
        proc.wait()
    assert owner_alive(f"{host}:{proc.pid}:{start}") is False  # exited
    assert owner_alive(f"{host}:{pid}:{int(start) + 1}") is False  # pid reused by another process
    assert owner_alive(f"another-host:{pid}:{start}") is None
    for garbage in (None, "", "nonsense", "host:pid:start"):
        assert owner_alive(garbage) is None


def test_signal_handlers_are_installed_once_and_chain() -> None:
    DockerSandboxProvider(SandboxSettings())
    assert signal.getsignal(signal.SIGTERM) is lifecycle._on_signal
    assert signal.getsignal(signal.SIGHUP) is lifecycle._on_signal
    DockerSandboxProvider(SandboxSettings())
    assert lifecycle._previous[signal.SIGTERM] is not lifecycle._on_signal


@pytest.mark.docker
def test_sandboxes_end_with_their_process_or_are_pruned_as_orphans(
    docker_client: docker.DockerClient, sandbox_image: str, tmp_path: Path
) -> None:
    labels = {"macrohard.test": f"lifecycle-{uuid.uuid4().hex[:8]}"}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cases = {"exit": None, "wait-int": signal.SIGINT, "wait-term": signal.SIGTERM, "wait-kill": signal.SIGKILL}
    children = {
        case: subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), json.dumps(labels), sandbox_image, case.split("-")[0]],
            stdout=subprocess.PIPE, text=True,
        )
        for case in cases
    }
    ids = {case: child.stdout.readline().strip() for case, child in children.items()}  # type: ignore[union-attr]
    assert all(ids.values()), ids
    for case, signum in cases.items():
        if signum is not None:
            children[case].send_signal(signum)
    codes = {case: child.wait(timeout=30) for case, child in children.items()}
    assert codes == {"exit": 0, "wait-int": -signal.SIGINT, "wait-term": -signal.SIGTERM, "wait-kill": -signal.SIGKILL}

    def exists(container_id: str) -> bool:
        try:
            docker_client.containers.get(container_id)
        except NotFound:
            return False
        return True

    deadline = time.monotonic() + 10  # removal can lag the child's exit a little
    while any(exists(ids[c]) for c in ("exit", "wait-int", "wait-term")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [c for c in ("exit", "wait-int", "wait-term") if exists(ids[c])] == []
    # SIGKILL leaves an orphan: the next run (or `macrohard sandbox prune`) removes it,
    # and leaves alone the sandbox of a process that still runs (this one).
    orphan = docker_client.containers.get(ids["wait-kill"])
    assert owner_alive(orphan.labels[OWNER_LABEL]) is False
    provider = DockerSandboxProvider(SandboxSettings(image=sandbox_image), docker_client)
    with provider.start(tmp_path, labels=labels) as ours:
        assert provider.prune_orphans(labels) == 1
        assert not exists(ids["wait-kill"])
        assert exists(ours.id)

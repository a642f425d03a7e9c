"""Hostile code in the sandbox: each attack is contained within its limit, the host
process and the sandbox go on, and no container is left behind.

The limits are small (256 MB, 64 processes, a 16 MB /tmp) so the attacks hit them fast.
No attack sends a packet anywhere: the sandbox has no network interface but lo, which
the network tests check before they try.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import macrohard.sandbox.container as sandbox_container
from macrohard.agent.tools import Confined, ReadFile, ToolError, WriteFile
from macrohard.config import SandboxSettings
from macrohard.sandbox.docker import DockerSandbox, DockerSandboxProvider

pytestmark = pytest.mark.docker

LABELS = {"macrohard.test": f"hostile-{uuid.uuid4().hex[:8]}"}
PLANTED = f"sk-macrohard-planted-{uuid.uuid4().hex}"
SMALL = SandboxSettings(memory="256m", pids_limit=64, tmpfs_size="16m", timeout_s=20)
MARK = "sleep 30"  # prefix of the durations the leftover checks look for


@pytest.fixture(scope="module")
def provider(docker_client: docker.DockerClient, sandbox_image: str) -> Iterator[DockerSandboxProvider]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sandbox_container, "KILL_GRACE_S", 0.5)  # fast timeouts for SIGTERM-deaf commands
        provider = DockerSandboxProvider(SMALL.model_copy(update={"image": sandbox_image}), docker_client)
        yield provider
        provider.close()
        provider.prune(LABELS)


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host directory outside the worktree, holding a secret the sandbox must not see."""
    folder = tmp_path_factory.mktemp("host")
    (folder / "secret.txt").write_text(f"{PLANTED}\n")
    return folder


@pytest.fixture(scope="module")
def worktree(tmp_path_factory: pytest.TempPathFactory, host_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("worktree")
    (root / "app.py").write_text("print('hi')\n")
    os.symlink(host_dir / "secret.txt", root / "leak")
    os.symlink(host_dir, root / "leakdir")
    return root


@pytest.fixture(scope="module")
def sandbox(provider: DockerSandboxProvider, worktree: Path) -> Iterator[DockerSandbox]:
    # A fake key in the host's environment, as a user's shell would have one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", PLANTED)
        mp.setenv("MACROHARD_PLANTED_TOKEN", PLANTED)
        box = provider.start(worktree, labels=LABELS)
    with box:
        yield box


def alive(sandbox: DockerSandbox) -> None:
    """The sandbox still runs commands, and nothing an attack started is left in it."""
    result = sandbox.exec("echo alive; ps -eo user=,args=")
    assert result.exit_code == 0 and result.output.startswith("alive\n"), result.output
    # A process that is exiting shows no args: a row of one field. Blank rows are not processes.
    lines = [(line.split(None, 1) + [""])[:2] for line in result.output.splitlines()[1:] if line.strip()]
    ours = [args for user, args in lines if user != "nobody"]
    # The runner, this shell and ps: nothing else.
    assert len(ours) == 3, ours
    assert MARK not in result.output


def test_fork_bomb_hits_the_process_limit_and_is_ended(sandbox: DockerSandbox) -> None:
    result = sandbox.exec("bomb() { bomb | bomb; }; bomb", timeout_s=3)
    # It burns out against the limit or is ended at the time limit, whichever is first.
    assert result.timed_out or result.exit_code != 0
    assert result.duration_s < 6
    assert "cannot fork" in result.output.lower(), result.output[-500:]
    alive(sandbox)


def test_fork_bomb_in_the_background_is_ended_with_its_command(sandbox: DockerSandbox) -> None:
    result = sandbox.exec("bomb() { bomb | bomb & }; bomb; echo lit", timeout_s=5)
    # Whatever of it still holds the command's output when the command is done is
    # killed (what burnt out against the process limit before that is gone already).
    assert result.output.startswith("lit\n") and not result.timed_out
    assert result.duration_s < 4
    alive(sandbox)


def test_fork_bomb_that_hides_its_output_is_ended_when_processes_run_out(sandbox: DockerSandbox) -> None:
    # Each process starts two more, then turns into a sleep: the tree fills the process
    # table and stays there.
    lit = sandbox.exec("bomb() { bomb & bomb & exec sleep 30; }; (bomb) >/dev/null 2>&1 & echo lit", timeout_s=5)
    assert lit.output.startswith("lit\n") and lit.duration_s < 3
    time.sleep(1)  # for the tree to fill the table
    # The bomb outlives its command (its output goes elsewhere); the next command
    # finds the process table crowded and the runner clears it first.
    result = sandbox.exec("echo next")
    assert result.exit_code == 0 and result.output.startswith("next\n")
    assert "running out of processes" in result.output
    alive(sandbox)


def test_memory_hog_is_oom_killed_and_the_runner_survives(sandbox: DockerSandbox) -> None:
    restarts = sandbox.restarts
    hog = "python3 -c 'x = []\nwhile True: x.append(bytearray(10**7))'"
    result = sandbox.exec(hog, timeout_s=20)
    assert result.oom_killed and result.exit_code == 137 and not result.timed_out
    assert result.duration_s < 15
    assert sandbox.restarts == restarts  # the OOM killer took the hog, not the runner
    alive(sandbox)


def test_filling_tmp_stops_at_the_tmpfs_size(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(
        "for d in /tmp /dev/shm; do dd if=/dev/zero of=$d/fill bs=1M count=64 2>&1 | grep -o 'No space.*'; "
        "du -sk $d | cut -f1; rm -f $d/fill; done"
    )
    assert result.output.count("No space left on device") == 2, result.output
    sizes = [int(line) for line in result.output.splitlines() if line.isdigit()]
    assert len(sizes) == 2 and all(size <= 16 * 1024 for size in sizes), result.output
    alive(sandbox)


def test_endless_loop_is_ended_at_the_time_limit(sandbox: DockerSandbox) -> None:
    result = sandbox.exec("while :; do :; done", timeout_s=1)
    assert result.timed_out and result.exit_code == 124
    assert result.duration_s >= 1 and result.duration_s < 3
    alive(sandbox)


def test_children_that_ignore_sigterm_do_not_outlive_the_timeout(sandbox: DockerSandbox) -> None:
    command = (
        "sh -c 'trap \"\" TERM; sleep 3001' & "
        "setsid sh -c 'trap \"\" TERM; sleep 3002' >/dev/null 2>&1 & "
        "(setsid sh -c 'trap \"\" TERM; sleep 3003' &) ; "  # double fork: reparented to init
        "trap '' TERM; echo started; sleep 3004"
    )
    result = sandbox.exec(command, timeout_s=1)
    assert result.timed_out and result.exit_code == 137  # SIGTERM was not enough
    assert result.output.startswith("started\n")
    assert result.duration_s >= 1 and result.duration_s < 4
    alive(sandbox)


def test_200_mb_output_flood_returns_capped_with_its_true_size(sandbox: DockerSandbox) -> None:
    size = 200 * 2**20
    result = sandbox.exec(f"yes | head -c {size}", timeout_s=30)
    limit = sandbox.settings.output_limit_bytes
    assert result.exit_code == 0 and not result.timed_out
    assert result.output_bytes == size and result.truncated
    assert len(result.output) <= limit + 100
    assert result.output.startswith("y\ny\n") and result.output.endswith("y\ny\n")
    assert result.duration_s < 15
    alive(sandbox)


def test_a_service_on_the_hosts_loopback_is_unreachable(sandbox: DockerSandbox) -> None:
    accepted: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.2)

        def serve() -> None:
            try:
                accepted.append(server.accept())
            except OSError:
                pass

        thread = threading.Thread(target=serve)
        thread.start()
        probe = (
            "import socket\n"
            "for host in ('127.0.0.1', 'localhost', 'host.docker.internal'):\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2); print(host, 'CONNECTED')\n"
            "    except OSError as e: print(host, type(e).__name__)\n"
        )
        result = sandbox.exec(f"python3 -c \"{probe}\"")
        thread.join()
    assert "CONNECTED" not in result.output, result.output
    assert "127.0.0.1 ConnectionRefusedError" in result.output  # the sandbox's own loopback
    assert accepted == []
    alive(sandbox)


def test_a_public_address_is_unreachable(sandbox: DockerSandbox) -> None:
    # Only lo exists, so nothing can leave; TEST-NET-1 is routed nowhere besides.
    probe = (
        "import socket\n"
        "try: socket.create_connection(('192.0.2.1', 443), timeout=2); print('CONNECTED')\n"
        "except OSError as e: print('refused', e)\n"
        "try: socket.getaddrinfo('example.com', 443); print('RESOLVED')\n"
        "except OSError as e: print('no dns', e)\n"
    )
    result = sandbox.exec(f'[ "$(ls /sys/class/net)" = lo ] && python3 -c "{probe}"')
    assert result.exit_code == 0, result.output
    assert "unreachable" in result.output.lower()
    assert "CONNECTED" not in result.output and "RESOLVED" not in result.output
    alive(sandbox)


def test_the_hosts_environment_holds_nothing_to_steal(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(
        "env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; "
        "grep -rl sk-macrohard-planted /proc/[0-9]*/environ /workspace 2>/dev/null; true"
    )
    assert PLANTED not in result.output
    assert "OPENAI_API_KEY" not in result.output and "MACROHARD_PLANTED_TOKEN" not in result.output
    alive(sandbox)


def test_writing_outside_workspace_and_tmp_fails(sandbox: DockerSandbox, worktree: Path) -> None:
    targets = ["/x", "/etc/x", "/usr/x", "/usr/local/bin/x", "/root/x", "/home/x", "/var/x", "/opt/x", "/run/lock/x"]
    result = sandbox.exec(
        "for p in " + " ".join(targets) + "; do touch $p 2>/dev/null && echo WROTE $p; done; "
        "touch /workspace/inside && echo inside ok"
    )
    assert "WROTE" not in result.output, result.output
    assert "inside ok" in result.output and (worktree / "inside").exists()
    alive(sandbox)


def test_a_symlink_to_a_host_file_leads_nowhere(sandbox: DockerSandbox, worktree: Path, host_dir: Path) -> None:
    fs = Confined(worktree)
    for path in ("leak", "leakdir/secret.txt", "/workspace/leak"):
        with pytest.raises(ToolError, match="outside the workspace"):
            ReadFile(fs).run(ReadFile.Args(path=path))
    with pytest.raises(ToolError, match="outside the workspace"):
        WriteFile(fs).run(WriteFile.Args(path="leak", content="overwritten"))
    assert (host_dir / "secret.txt").read_text() == f"{PLANTED}\n"
    # Inside, the link names a host path that does not exist in the container.
    result = sandbox.exec("cat leak leakdir/secret.txt 2>&1; echo done")
    assert PLANTED not in result.output and "No such file" in result.output
    alive(sandbox)


def test_a_process_left_running_cannot_race_the_file_tools_out_with_links(
    sandbox: DockerSandbox, worktree: Path, host_dir: Path
) -> None:
    # Flips /workspace/d between a folder and a link to the host folder, as fast as it
    # can, while the host's file tools write and read through d. Its output goes to
    # /dev/null so it outlives its command.
    flipper = (
        "import os, shutil\n"
        "d = '/workspace/d'\n"
        "while True:\n"
        "    try:\n"
        "        if os.path.islink(d): os.unlink(d); os.mkdir(d)\n"
        f"        else: shutil.rmtree(d, ignore_errors=True); os.symlink({str(host_dir)!r}, d)\n"
        "    except OSError: pass\n"
    )
    (worktree / "race_links.py").write_text(flipper)
    started = sandbox.exec("python3 race_links.py >/dev/null 2>&1 & sleep 0.3; pgrep -f race_links.py")
    assert started.exit_code == 0, started.output  # it runs on after its command
    fs = Confined(worktree)
    leaked, tries, deadline = 0, 0, time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            tries += 1
            for tool, args in ((WriteFile, {"path": "d/planted.txt", "content": "x"}), (ReadFile, {"path": "d/secret.txt"})):
                try:
                    leaked += PLANTED in tool(fs).run(tool.Args(**args))
                except (ToolError, OSError):  # as the agent loop reports them to the model
                    pass
    finally:
        sandbox.exec("pkill -f race_links.py; rm -rf d race_links.py")
    assert tries > 100 and leaked == 0
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret.txt"]
    alive(sandbox)


def test_there_is_no_docker_socket(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(
        "ls -l /var/run/docker.sock /run/docker.sock 2>&1; grep -c docker.sock /proc/mounts; "
        "find / -xdev -name 'docker.sock' 2>/dev/null; echo DOCKER_HOST=$DOCKER_HOST"
    )
    assert result.output.count("No such file or directory") == 2, result.output
    assert "\n0\n" in result.output and "DOCKER_HOST=\n" in result.output
    assert "/docker.sock\n" not in result.output.replace("/run/docker.sock'", "")
    alive(sandbox)


def test_a_command_that_kills_the_runner_gets_the_sandbox_restarted(sandbox: DockerSandbox) -> None:
    restarts = sandbox.restarts
    result = sandbox.exec("sleep 3005 >/dev/null 2>&1 & kill -9 $PPID; sleep 5")
    assert result.exit_code == -1 and not result.timed_out
    assert "the sandbox was restarted" in result.output
    assert result.duration_s < 5
    assert sandbox.restarts == restarts + 1
    alive(sandbox)


def test_killing_every_process_in_reach_spares_the_container(sandbox: DockerSandbox) -> None:
    sandbox.exec("kill -9 -1")
    alive(sandbox)


def test_nothing_is_left_behind(provider: DockerSandboxProvider, docker_client: docker.DockerClient) -> None:
    provider.close()
    assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in LABELS.items()]}) == []


@pytest.mark.docker
def test_sandboxed_code_cannot_rewrite_git_config_that_host_git_would_obey(docker_client, sandbox_image, tmp_path):
    """core.fsmonitor in a repository's config is a command git runs on the host."""
    import subprocess

    from macrohard.config import SandboxSettings
    from macrohard.sandbox.docker import DockerSandboxProvider
    from macrohard.workspace.git import GitWorkspace

    ws = GitWorkspace(tmp_path / "run")
    ws.init()
    worktree = ws.worktree("T-1")
    planted = tmp_path / "host-was-reached"
    provider = DockerSandboxProvider(SandboxSettings(), docker_client)
    # Read-only by mount, whoever the sandbox user is: with the owner's uid (a normal
    # user's run) file permissions alone would let it write.
    with provider.start(ws.repo_dir, labels={"macrohard.test": "git-config"}) as box:
        result = box.exec(f"git config --file /workspace/.git/config core.fsmonitor 'touch {planted}'")
    assert result.exit_code != 0 and "Read-only file system" in result.output, result.output
    with provider.start(worktree, labels={"macrohard.test": "git-config"}) as box:
        result = box.exec("echo 'gitdir: /workspace/evil' > /workspace/.git")
    assert result.exit_code != 0 and "Read-only file system" in result.output, result.output
    # The host's git keeps working on the repository, and nothing it runs was planted.
    subprocess.run(["git", "status"], cwd=worktree, check=True, capture_output=True)
    (worktree / "a.txt").write_text("x\n")
    from macrohard.workspace.git import Provenance

    assert ws.commit(worktree, "T-1: a", Provenance(run_id="r", role="engineer", ticket="T-1", event_id="ev-1"))
    assert not planted.exists()

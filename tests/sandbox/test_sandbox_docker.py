"""The Docker sandbox, against a real engine: isolation, limits, output, cleanup.

Hostile commands have their own suite (test_hostile.py); this one checks that ordinary
commands behave and that each hardening option is in place.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

import macrohard.sandbox.container as sandbox_container
import macrohard.sandbox.docker as sandbox_docker
from macrohard.config import SandboxSettings
from macrohard.errors import SandboxError
from macrohard.sandbox.docker import (
    KEEP_ALIVE_UID,
    OWNER_LABEL,
    SANDBOX_ENV,
    DockerSandbox,
    DockerSandboxProvider,
    RunnerRequest,
    docker_client,
    render,
)
from macrohard.sandbox.lifecycle import owner_id

# Every container these tests start carries this label, so a failed test leaves nothing.
TEST_LABELS = {"macrohard.test": f"sandbox-{uuid.uuid4().hex[:8]}"}
LEFTOVER = "sleep 300"  # prefix of the durations the timeout tests use


@pytest.fixture(scope="module")
def provider(
    docker_client: docker.DockerClient, sandbox_image: str
) -> Iterator[DockerSandboxProvider]:
    provider = DockerSandboxProvider(SandboxSettings(image=sandbox_image), docker_client)
    yield provider
    provider.prune(TEST_LABELS)


@pytest.fixture(scope="module")
def sandbox(
    provider: DockerSandboxProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerSandbox]:
    """One sandbox shared by the tests that only look around."""
    with provider.start(tmp_path_factory.mktemp("shared"), labels=TEST_LABELS) as sandbox:
        yield sandbox


def _owned_by_1000(path: Path) -> Path:
    """A directory owned by a non-root user: uid 1000 when we are root, else ourselves."""
    path.mkdir()
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    return path


def _processes(sandbox: DockerSandbox) -> str:
    return sandbox.exec("ps -eo pid,args").output


# ---- no engine needed ----------------------------------------------------------


def test_docker_client_names_the_unreachable_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = f"unix://{tmp_path}/no-such-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(SandboxError) as caught:
        docker_client()
    assert caught.value.message.startswith(f"no Docker engine answers at {host}")
    assert caught.value.hint == "start Docker or set DOCKER_HOST"


def test_render_marks_what_was_omitted() -> None:
    assert render(b"0123", b"4567", 8) == ("01234567", False)
    assert render(b"aaabb", b"uuvvv", 300) == ("aaabb\n... [290 bytes omitted] ...\nuuvvv", True)
    assert render(b"\xe2\x82", b"", 2) == ("\ufffd", False)  # a cut character is replaced, not fatal


# ---- against the engine --------------------------------------------------------


@pytest.mark.docker
def test_output_and_exit_code(sandbox: DockerSandbox) -> None:
    result = sandbox.exec("echo out; echo err >&2; exit 3")
    assert result.exit_code == 3
    assert result.output == "out\nerr\n"
    assert (result.output_bytes, result.truncated, result.timed_out, result.oom_killed) == (
        8,
        False,
        False,
        False,
    )
    assert 0 < result.duration_s < 10


@pytest.mark.docker
def test_container_has_hardened_settings(
    sandbox: DockerSandbox, docker_client: docker.DockerClient
) -> None:
    attrs = docker_client.api.inspect_container(sandbox.id)
    host, config = attrs["HostConfig"], attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "size=64m,mode=1777,exec"}
    assert host["ShmSize"] == 64 * 2**20
    assert host["Init"] is True
    assert host["Memory"] == host["MemorySwap"] == 2**30
    assert host["PidsLimit"] == 256
    assert host["NanoCpus"] == 10**9
    assert host["Binds"] == [f"{sandbox.workdir}:/workspace:rw"]
    assert "docker.sock" not in str(host) and "docker.sock" not in str(attrs["Mounts"])
    # The keep-alive runs as a uid the commands cannot signal.
    assert config["User"] == f"{KEEP_ALIVE_UID}:{KEEP_ALIVE_UID}" != sandbox.user
    assert config["Env"] and {e.split("=", 1)[0] for e in config["Env"]} <= set(SANDBOX_ENV)
    assert config["Labels"]["macrohard.sandbox"] == "1"
    assert config["Labels"][OWNER_LABEL] == owner_id()
    assert TEST_LABELS.items() <= config["Labels"].items()


@pytest.mark.docker
def test_files_written_in_workspace_belong_to_the_host_user(
    provider: DockerSandboxProvider, tmp_path: Path
) -> None:
    workdir = _owned_by_1000(tmp_path / "owned")
    (workdir / "given.txt").write_text("from host\n")
    with provider.start(workdir, labels=TEST_LABELS) as sandbox:
        result = sandbox.exec("pwd; cat given.txt; mkdir sub && echo hi > sub/made.txt")
    assert result.output == "/workspace\nfrom host\n"
    made = workdir / "sub" / "made.txt"
    assert made.read_text() == "hi\n"
    assert (made.stat().st_uid, made.stat().st_gid) == (workdir.stat().st_uid, workdir.stat().st_gid)


@pytest.mark.docker
def test_a_root_owned_workdir_gets_an_unprivileged_user_that_can_write_it(
    provider: DockerSandboxProvider, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root host makes root-owned workdirs")
    workdir = tmp_path / "rootowned"
    (workdir / "pkg").mkdir(parents=True)
    (workdir / "pkg" / "mod.py").write_text("x = 1\n")
    (workdir / ".git").mkdir()
    (workdir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    with provider.start(workdir, labels=TEST_LABELS) as sandbox:
        (workdir / "pkg" / "later.py").write_text("y = 2\n")  # created by the host after start
        result = sandbox.exec(
            "id -u; echo z=3 >> pkg/mod.py && echo ok1; echo w >> pkg/later.py && echo ok2; "
            "mkdir -p new/deep && touch new/deep/f && echo ok3; echo x > .git/HEAD || echo denied"
        )
    lines = result.output.split()
    assert lines[0] == str(provider.settings.unprivileged_uid)
    assert lines[1:4] == ["ok1", "ok2", "ok3"] and "denied" in lines
    assert (workdir / "pkg" / "mod.py").read_text() == "x = 1\nz=3\n"
    assert (workdir / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert workdir.stat().st_uid == 0  # ownership untouched: host git keeps trusting it


@pytest.mark.docker
def test_runs_as_the_non_root_owner_with_no_capabilities(
    provider: DockerSandboxProvider, tmp_path: Path
) -> None:
    workdir = _owned_by_1000(tmp_path / "owned")
    uid, gid = workdir.stat().st_uid, workdir.stat().st_gid
    assert uid != 0
    with provider.start(workdir, labels=TEST_LABELS) as sandbox:
        result = sandbox.exec(
            "id -u; id -g; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; touch made"
        )
    assert result.exit_code == 0, result.output
    lines = result.output.split()
    assert lines[:2] == [str(uid), str(gid)]
    assert "0000000000000000" in lines[lines.index("CapEff:") + 1]
    assert lines[lines.index("CapPrm:") + 1] == "0000000000000000"
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    assert (workdir / "made").stat().st_uid == uid


@pytest.mark.docker
def test_network_is_off(sandbox: DockerSandbox) -> None:
    assert sandbox.exec("ls /sys/class/net").output.split() == ["lo"]
    # TEST-NET-1: reserved, routed nowhere; with only lo, nothing could leave anyway.
    probe = "import socket; socket.create_connection(('192.0.2.1', 53), timeout=3)"
    result = sandbox.exec(f'python3 -c "{probe}"')
    assert result.exit_code != 0
    assert "unreachable" in result.output.lower()


@pytest.mark.docker
def test_root_fs_is_read_only_but_tmp_is_writable(sandbox: DockerSandbox) -> None:
    denied = sandbox.exec("touch /usr/local/bin/evil")
    assert denied.exit_code != 0
    assert "Read-only file system" in denied.output
    allowed = sandbox.exec(
        "printf '#!/bin/sh\\necho ran\\n' > /tmp/t.sh && chmod +x /tmp/t.sh && /tmp/t.sh"
    )
    assert (allowed.exit_code, allowed.output) == (0, "ran\n")


@pytest.mark.docker
def test_environment_holds_nothing_from_the_host(
    provider: DockerSandboxProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MACROHARD_TEST_SECRET", "hunter2")
    with provider.start(tmp_path, labels=TEST_LABELS) as sandbox:
        result = sandbox.exec("env")
    assert "hunter2" not in result.output
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    # Docker adds HOSTNAME; sh adds PWD.
    assert names <= set(SANDBOX_ENV) | {"HOSTNAME", "PWD"}
    assert "HOME=/tmp" in result.output.splitlines()


@pytest.mark.docker
def test_timeout_kills_children_that_ignore_sigterm_or_escape(sandbox: DockerSandbox) -> None:
    command = (
        "sh -c 'trap \"\" TERM; sleep 3001' & "
        "setsid sh -c 'trap \"\" TERM; sleep 3002' & "
        "trap '' TERM; echo started; sleep 3003"
    )
    result = sandbox.exec(command, timeout_s=1)
    assert result.timed_out
    assert result.exit_code in (124, 137)
    assert result.output.startswith("started\n")
    assert result.duration_s >= 1 and result.duration_s < 8
    assert LEFTOVER not in _processes(sandbox)
    assert sandbox.exec("echo alive").output == "alive\n"


@pytest.mark.docker
def test_exit_124_without_timeout_is_not_a_timeout(sandbox: DockerSandbox) -> None:
    result = sandbox.exec("exit 124", timeout_s=30)
    assert (result.exit_code, result.timed_out) == (124, False)


@pytest.mark.docker
def test_backstop_restarts_a_sandbox_whose_runner_failed_to_limit(
    sandbox: DockerSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runner told a far longer limit stands in for enforcement that broke.
    def lax(**fields: object) -> RunnerRequest:
        return RunnerRequest.model_validate({**fields, "timeout": 3600})

    monkeypatch.setattr(sandbox_container, "RunnerRequest", lax)
    monkeypatch.setattr(sandbox_container, "KILL_GRACE_S", 0.0)
    monkeypatch.setattr(sandbox_container, "BACKSTOP_MARGIN_S", 0.5)
    restarts = sandbox.restarts
    result = sandbox.exec("setsid sleep 3004 >/dev/null 2>&1 & sleep 3005", timeout_s=0.5)
    monkeypatch.undo()
    assert result.timed_out and result.exit_code == 124
    assert "the sandbox was restarted" in result.output
    assert result.duration_s >= 1 and result.duration_s < 8
    assert sandbox.restarts == restarts + 1
    assert LEFTOVER not in _processes(sandbox)


@pytest.mark.docker
def test_background_processes_survive_only_with_their_output_redirected(sandbox: DockerSandbox) -> None:
    kept = sandbox.exec("sleep 3006 >/dev/null 2>&1 & echo started")
    assert (kept.exit_code, kept.output, kept.duration_s < 0.5) == (0, "started\n", True)
    held = sandbox.exec("sleep 3007 & echo started")
    assert held.exit_code == 0 and held.output.startswith("started\n")
    assert "still held its output and were killed" in held.output
    assert held.duration_s < 3
    left = _processes(sandbox)
    assert "sleep 3006" in left and "sleep 3007" not in left
    sandbox.exec("pkill -f 'sleep 3006'")


@pytest.mark.docker
def test_commands_on_one_sandbox_from_many_threads_take_turns(sandbox: DockerSandbox) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: sandbox.exec(f"echo {i}; sleep 0.05; echo {i}"), range(8)))
    assert [r.output for r in results] == [f"{i}\n{i}\n" for i in range(8)]


@pytest.mark.docker
def test_a_trivial_command_answers_in_well_under_50_ms(sandbox: DockerSandbox) -> None:
    # The runner's whole point: `docker exec` alone costs ~60 ms per command.
    sandbox.exec("true")
    durations = sorted(sandbox.exec("true").duration_s for _ in range(15))
    assert durations[7] < 0.05, durations


@pytest.mark.docker
def test_memory_exhaustion_is_reported_as_oom(
    provider: DockerSandboxProvider, tmp_path: Path
) -> None:
    small = DockerSandboxProvider(
        provider.settings.model_copy(update={"memory": "128m"}), provider.client
    )
    with small.start(tmp_path, labels=TEST_LABELS) as sandbox:
        result = sandbox.exec("python3 -c 'x = bytearray(512 * 2**20)'")
        fine = sandbox.exec("python3 -c 'x = bytearray(8 * 2**20)'")
    assert result.oom_killed
    assert result.exit_code == 137
    assert not result.timed_out
    assert (fine.exit_code, fine.oom_killed) == (0, False)


@pytest.mark.docker
def test_large_output_keeps_head_tail_and_true_size(sandbox: DockerSandbox) -> None:
    size = 5_000_000
    script = f"import sys; sys.stdout.write('HEAD' + 'x' * {size} + 'TAIL')"
    result = sandbox.exec(f'python3 -c "{script}"')
    limit = sandbox.settings.output_limit_bytes
    assert result.exit_code == 0
    assert result.output_bytes == size + 8
    assert result.truncated
    assert result.output.startswith("HEADxxx")
    assert result.output.endswith("xxxTAIL")
    assert f"\n... [{size + 8 - limit} bytes omitted] ...\n" in result.output
    assert limit <= len(result.output) <= limit + 100


@pytest.mark.docker
def test_stop_removes_the_container_and_can_repeat(
    provider: DockerSandboxProvider, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    sandbox = provider.start(tmp_path, labels=TEST_LABELS)
    assert docker_client.containers.get(sandbox.id).status == "running"
    sandbox.stop()
    with pytest.raises(NotFound):
        docker_client.containers.get(sandbox.id)
    sandbox.stop()
    with pytest.raises(SandboxError, match="stopped"):
        sandbox.exec("true")


@pytest.mark.docker
def test_prune_removes_only_matching_labelled_containers(
    provider: DockerSandboxProvider, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    run, other = f"run-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    doomed = [
        provider.start(tmp_path, labels={**TEST_LABELS, "macrohard.run": run}) for _ in range(2)
    ]
    kept = provider.start(tmp_path, labels={**TEST_LABELS, "macrohard.run": other})
    assert provider.prune({"macrohard.run": run}) == 2
    for sandbox in doomed:
        with pytest.raises(NotFound):
            docker_client.containers.get(sandbox.id)
    assert docker_client.containers.get(kept.id).status == "running"
    assert provider.prune({"macrohard.run": other}) == 1
    assert provider.prune({"macrohard.run": other}) == 0


@pytest.mark.docker
def test_missing_image_is_a_sandbox_error(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    provider = DockerSandboxProvider(SandboxSettings(image="macrohard-missing:nope"), docker_client)
    with pytest.raises(SandboxError) as caught:
        provider.start(tmp_path, labels=TEST_LABELS)
    assert "macrohard-missing:nope" in caught.value.message
    assert caught.value.hint is not None and "macrohard sandbox build" in caught.value.hint


@pytest.mark.docker
def test_an_image_without_python_fails_clearly_and_leaves_nothing(
    provider: DockerSandboxProvider, docker_client: docker.DockerClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_container, "RUNNER_COMMAND", ["python3-missing", "-c", "pass"])
    labels = {**TEST_LABELS, "macrohard.case": uuid.uuid4().hex[:8]}
    with pytest.raises(SandboxError) as caught:
        provider.start(tmp_path, labels=labels)
    assert "the command runner does not start" in caught.value.message
    assert caught.value.hint is not None and "python3" in caught.value.hint
    assert provider.prune(labels) == 0


@pytest.mark.docker
def test_prune_orphans_removes_only_containers_whose_owner_is_gone(
    provider: DockerSandboxProvider, docker_client: docker.DockerClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = {**TEST_LABELS, "macrohard.case": uuid.uuid4().hex[:8]}
    live = provider.start(tmp_path, labels=labels)
    # Our own pid with another start time: how a crashed run looks once its pid is reused.
    monkeypatch.setattr(sandbox_docker.lifecycle, "owner_id", lambda: owner_id().rsplit(":", 1)[0] + ":1")
    orphan = provider.start(tmp_path, labels=labels)
    monkeypatch.undo()
    assert provider.prune_orphans(labels) == 1
    with pytest.raises(NotFound):
        docker_client.containers.get(orphan.id)
    assert docker_client.containers.get(live.id).status == "running"
    assert provider.prune_orphans(labels) == 0
    live.stop()


@pytest.mark.docker
def test_close_removes_every_sandbox_the_provider_started(
    provider: DockerSandboxProvider, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    own = DockerSandboxProvider(provider.settings, docker_client, cleanup_on_exit=False)
    boxes = [own.start(tmp_path, labels=TEST_LABELS) for _ in range(2)]
    boxes[0].stop()
    assert own.close() == 1
    for box in boxes:
        with pytest.raises(NotFound):
            docker_client.containers.get(box.id)
    assert own.close() == 0


@pytest.mark.docker
def test_a_warm_command_starts_ahead_and_is_released_by_its_exec(sandbox: DockerSandbox) -> None:
    # Its start-up (the first date) happens at warm(); the rest waits for the exec of the same command.
    command = "date +%s.%N > /tmp/warm-started; read go; date +%s.%N; cat /tmp/warm-started"
    sandbox.warm(command)
    time.sleep(1.0)
    asked = time.time()
    result = sandbox.exec(command)
    released, started = (float(x) for x in result.output.split())
    assert result.exit_code == 0
    assert started < asked - 0.5 < released  # started a second before it was asked for, ran on after
    # Another command ends a held one unused: nothing of it is left.
    sandbox.warm("read go; sleep 3007")
    other = sandbox.exec("echo other")
    assert other.output == "other\n" and "3007" not in _processes(sandbox)


@pytest.mark.docker
def test_two_warm_commands_serve_two_execs_and_outlive_an_end_that_keeps_them(sandbox: DockerSandbox) -> None:
    # As a verdict's sandbox runs its tests twice (the verdict, then on the base): both start ahead,
    # each a child of sh (which must survive with it), and each run leaves a process behind.
    command = ("python3 -c 'import sys, time; started = time.time(); sys.stdin.readline(); print(started)'; "
               "(sleep 3011 >/dev/null 2>&1 &)")
    sandbox.warm(command)
    sandbox.warm(command)
    time.sleep(1.0)
    asked = time.time()
    first = sandbox.exec(command)
    sandbox.end_processes(keep_warm=True)  # what the first run left is ended; the second's command waits on
    second = sandbox.exec(command)
    assert first.exit_code == second.exit_code == 0, (first.output, second.output)
    assert float(first.output) < asked - 0.5 and float(second.output) < asked - 0.5
    assert _processes(sandbox).count("sleep 3011") == 1  # only the second run's
    # Without keep_warm, a waiting command is ended too: the exec then runs it afresh.
    sandbox.warm(command)
    sandbox.end_processes()
    asked = time.time()
    fresh = sandbox.exec(command)
    assert float(fresh.output) >= asked and _processes(sandbox).count("sleep 3011") == 1
    sandbox.end_processes()  # the module's sandbox is left as it was found: idle
    assert sandbox.idle()


@pytest.mark.docker
def test_a_sandbox_is_idle_only_with_no_process_of_its_own_left(sandbox: DockerSandbox) -> None:
    assert sandbox.idle()  # the runner and the container's keep-alive do not count
    sandbox.exec("sleep 3008 >/dev/null 2>&1 &")
    assert not sandbox.idle()
    sandbox.exec("pkill -f '[s]leep 3008'; sleep 0.3")
    assert sandbox.idle()
    # A process that hides its /proc folder from its uid (not dumpable) still counts.
    hider = ("python3 -c 'import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); time.sleep(3009)'"
             " >/dev/null 2>&1 &")
    sandbox.exec(hider)
    time.sleep(0.3)
    assert not sandbox.idle()
    sandbox.exec("pkill -f '[3]009'; sleep 0.3")  # [3]: the pattern does not match this command's own line
    assert sandbox.idle()
    # A process whose main thread exited (a zombie leader) while another thread runs on still counts,
    # as does a chain of processes that each fork the next and exit.
    leader = ("python3 -c 'import ctypes, threading, time; threading.Thread(target=time.sleep, args=(3010,)).start(); "
              "time.sleep(0.1); ctypes.CDLL(None).syscall(60, 0)' >/dev/null 2>&1 &")
    pid = sandbox.exec(leader + " echo $!").output.strip()
    time.sleep(0.5)
    assert not sandbox.idle()
    sandbox.exec(f"kill -9 {pid}; sleep 0.3")  # by pid: a zombie leader has no command line to match
    chain = ("python3 -c 'import os, time\nwhile not os.path.exists(\"/tmp/stop-chain\"):\n    if os.fork(): os._exit(0)\n"
             "    time.sleep(0.001)' >/dev/null 2>&1 &")
    sandbox.exec(chain)
    busy = [not sandbox.idle() for _ in range(50)]
    assert all(busy)
    sandbox.exec("touch /tmp/stop-chain; sleep 0.3")
    assert sandbox.idle()

"""The in-sandbox command runner, run on the host: no engine needed.

On the host the runner must never arm `kill_rest` (it would kill every process the
test user may signal), so these tests only use commands that stay in their own
process group, and the first test checks that the runner knows it is not sandboxed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from macrohard.sandbox import runner
from macrohard.sandbox.docker import RUNNER_SOURCE
from macrohard.sandbox.runner import Command, OutputCap


def run(command: str, timeout: float = 5, limit: int = 1000, grace: float = 0.5) -> dict[str, object]:
    cmd = Command({"command": command, "timeout": timeout, "grace": grace, "drain": 0.3, "limit": limit})
    started = time.monotonic()
    answer = cmd.run()
    answer["output"] = bytes(cmd.cap.head) + cmd.cap.tail
    answer["duration"] = time.monotonic() - started
    return answer


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def gone(pid: int) -> bool:
    """True once `pid` has died; a SIGKILLed process closes its files a moment before."""
    deadline = time.monotonic() + 2
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not alive(pid)


def test_the_host_is_not_a_sandbox() -> None:
    assert not runner.in_sandbox(["-c", runner.SANDBOX_FLAG])
    assert not runner.in_sandbox([])
    assert runner.SANDBOXED is False


def test_kill_rest_does_nothing_outside_a_sandbox() -> None:
    with subprocess.Popen(["sleep", "30"]) as bystander:
        runner.kill_rest(os.getpid())
        assert bystander.poll() is None
        bystander.kill()


def test_output_cap_keeps_everything_up_to_the_limit() -> None:
    cap = OutputCap(10)
    for piece in (b"0123", b"4567", b"89"):
        cap.add(piece)
    assert (bytes(cap.head) + cap.tail, cap.total) == (b"0123456789", 10)


def test_output_cap_keeps_head_and_tail_halves() -> None:
    cap = OutputCap(10)
    for i in range(100):
        cap.add(bytes([ord("a") + i % 26]) * 3)
    assert (bytes(cap.head), cap.tail, cap.total) == (b"aaabb", b"uuvvv", 300)


def test_output_exit_code_and_true_size() -> None:
    answer = run("echo out; echo err >&2; exit 3")
    assert (answer["exit_code"], answer["output"], answer["total"]) == (3, b"out\nerr\n", 8)
    assert (answer["timed_out"], answer["notes"]) == (False, [])
    big = run("head -c 100000 /dev/zero", limit=100)
    assert (big["total"], big["head"], len(big["output"])) == (100000, 50, 100)  # type: ignore[arg-type]


def test_a_killed_command_exits_like_in_a_shell() -> None:
    assert run("kill -9 $$")["exit_code"] == 137


def test_timeout_with_sigterm_is_124() -> None:
    answer = run("echo started; sleep 30", timeout=0.3)
    assert (answer["exit_code"], answer["timed_out"], answer["output"]) == (124, True, b"started\n")
    assert answer["duration"] < 2


def test_timeout_kills_the_group_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    answer = run(f"sh -c 'trap \"\" TERM; sleep 30' & echo $! > {pids}; trap '' TERM; sleep 30", timeout=0.3)
    assert (answer["exit_code"], answer["timed_out"]) == (137, True)
    assert answer["duration"] < 3
    assert gone(int(pids.read_text()))


def test_background_process_holding_the_output_is_ended(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    held = run(f"sleep 30 & echo $! > {pids}; echo done")
    assert held["output"] == b"done\n" and held["exit_code"] == 0
    assert any("still held its output" in note for note in held["notes"])  # type: ignore[attr-defined]
    assert gone(int(pids.read_text()))


def test_background_process_with_redirected_output_is_kept(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    kept = run(f"sleep 30 >/dev/null 2>&1 & echo $! > {pids}; echo done")
    pid = int(pids.read_text())
    try:
        assert (kept["output"], kept["notes"]) == (b"done\n", [])
        assert kept["duration"] < 0.3  # type: ignore[operator]
        assert alive(pid)
    finally:
        os.kill(pid, 9)


def test_a_command_that_closes_its_output_is_still_waited_for() -> None:
    answer = run("echo before; exec >&- 2>&-; sleep 0.4; exit 5")
    assert (answer["exit_code"], answer["output"]) == (5, b"before\n")
    assert answer["duration"] >= 0.4


def test_the_protocol_through_the_bootstrap() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", runner.BOOTSTRAP],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def frame() -> tuple[bytes, bytes]:
        kind, size = runner.HEADER.unpack(proc.stdout.read(runner.HEADER.size))  # type: ignore[union-attr]
        return kind, proc.stdout.read(size)  # type: ignore[union-attr]

    try:
        proc.stdin.write(b"%d\n%s" % (len(RUNNER_SOURCE), RUNNER_SOURCE))
        proc.stdin.flush()
        kind, hello = frame()
        assert kind == runner.HELLO and json.loads(hello)["sandboxed"] is False
        proc.stdin.write(b'{"command": "echo hi"}\n')  # no timeout: refused, runner goes on
        proc.stdin.flush()
        kind, error = frame()
        assert kind == runner.ERROR and b"bad request" in error
        request = {"command": "echo hi; exit 4", "timeout": 5, "grace": 1, "drain": 0.1, "limit": 100}
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        assert frame() == (runner.OUTPUT, b"hi\n")
        kind, result = frame()
        assert kind == runner.RESULT and json.loads(result)["exit_code"] == 4
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0


@pytest.mark.parametrize("code, expected", [(0, 0), (3, 3), (-9, 137), (-15, 143)])
def test_shell_codes(code: int, expected: int) -> None:
    assert runner._shell_code(code) == expected


def test_a_held_command_starts_at_once_and_runs_on_at_the_go(tmp_path: Path) -> None:
    # It does its start-up (here: writes a file) before the go, and the rest only after.
    marker, after = tmp_path / "started", tmp_path / "released"
    script = f"touch {marker}; read line; echo got:$line; touch {after}"
    held = Command({"command": script, "timeout": 5, "grace": 0.5, "drain": 0.3, "limit": 1000})
    held.start(held=True)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists() and held.waiting()
    time.sleep(0.2)
    assert not after.exists()
    held.go({"timeout": 5, "grace": 0.5, "drain": 0.3, "limit": 1000})
    answer = held.finish()
    assert answer["exit_code"] == 0 and after.exists()
    assert (bytes(held.cap.head) + held.cap.tail).decode() == "got:\n"


def test_an_abandoned_held_command_never_runs_on(tmp_path: Path) -> None:
    after = tmp_path / "released"
    held = Command({"command": f"read line; touch {after}", "timeout": 5, "grace": 0.5, "drain": 0.3, "limit": 1000})
    held.start(held=True)
    pid = held._proc.pid if held._proc else 0
    held.abandon()
    assert gone(pid)
    time.sleep(0.2)
    assert not after.exists()


def test_warm_requests_through_the_bootstrap(tmp_path: Path) -> None:
    # The protocol as the host speaks it: warm, then the same command is released, another is run afresh.
    after = tmp_path / "released"
    common = {"timeout": 5, "grace": 0.5, "drain": 0.3, "limit": 1000}
    waits = f"read line; echo released; touch {after}"
    requests = [
        {"command": waits, "warm": True, **common},
        {"command": waits, **common},
        {"command": waits, "warm": True, **common},
        {"command": "echo other", **common},  # ends the held one unused
    ]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", runner.BOOTSTRAP],
        input=b"%d\n%s" % (len(RUNNER_SOURCE), RUNNER_SOURCE) + b"".join(json.dumps(r).encode() + b"\n" for r in requests),
        capture_output=True, timeout=20,
    )
    frames, data = [], proc.stdout
    while data:
        kind, size = runner.HEADER.unpack(data[: runner.HEADER.size])
        frames.append((kind, data[runner.HEADER.size : runner.HEADER.size + size]))
        data = data[runner.HEADER.size + size :]
    results = [json.loads(p) for k, p in frames if k == runner.RESULT]
    outputs = [p for k, p in frames if k == runner.OUTPUT]
    assert [r.get("warmed", False) for r in results] == [True, False, True, False]
    assert outputs[1] == b"released\n" and outputs[3] == b"other\n"
    assert after.exists()
    after.unlink()
    time.sleep(0.2)
    assert not after.exists()  # the second warm start was ended, not released

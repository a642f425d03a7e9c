"""`macrohard demo` as a person runs it: in a pseudo-terminal, answering the approval prompt, pressing
Ctrl-C, or piping the output into a program that stops reading. Real Docker sandboxes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

PROMPT = "approve or reject?"


def spawn(folder: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "COLUMNS": "100", "LINES": "40"}
    return pexpect.spawn(sys.executable, ["-m", "macrohard.cli", *args, "--workspaces", "ws"], cwd=str(folder), env=env,
                         encoding="utf-8", timeout=180, dimensions=(40, 100))


def finished(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def run_json(folder: Path) -> dict:
    (path,) = (folder / "ws").glob("*/run.json")
    return json.loads(path.read_text())


def approvals(folder: Path) -> list[tuple[str, str, str]]:
    (path,) = (folder / "ws").glob("*/transcript.jsonl")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["data"]["gate"], e["data"]["decision"], e["data"]["comment"]) for e in events if e["kind"] == "approval"]


def test_approving_the_plan_at_the_prompt(tmp_path, sandbox_image):
    child = spawn(tmp_path, "demo", "--approve", "plan")
    child.expect("Approve the plan")
    child.expect_exact(PROMPT)
    child.sendline("approve")
    child.expect(r"Run \S+: done")
    assert finished(child) == 0
    assert run_json(tmp_path)["status"] == "done"
    assert approvals(tmp_path) == [("plan", "approve", "")]


def test_rejecting_the_plan_with_a_comment_plans_again(tmp_path, sandbox_image):
    child = spawn(tmp_path, "demo", "--approve", "plan")
    child.expect_exact(PROMPT)
    child.sendline("maybe")  # not an answer: asked again
    child.expect("answer approve or reject")
    child.expect_exact(PROMPT)
    child.sendline("r")
    child.expect_exact("what should change?")
    child.sendline("")  # a rejection needs a comment
    child.expect("a rejection needs a comment")
    child.sendline("Put the command line in a ticket of its own.")
    child.expect("revised after review")  # the second plan, shown at the gate
    child.expect_exact(PROMPT)
    child.sendline("")  # Enter approves
    child.expect(r"Run \S+: done")
    assert finished(child) == 0
    assert approvals(tmp_path) == [("plan", "reject", "Put the command line in a ticket of its own."),
                                   ("plan", "approve", "")]


def test_ctrl_d_at_the_prompt_leaves_the_run_waiting(tmp_path, sandbox_image):
    child = spawn(tmp_path, "demo", "--approve", "plan")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect("answer it:  macrohard approve")
    assert finished(child) == 5
    record = run_json(tmp_path)
    assert record["status"] == "awaiting_approval" and record["awaiting"]["gate"] == "plan"
    assert not record.get("failure")


def test_ctrl_c_pauses_with_a_hint_that_fits_the_pause(tmp_path, sandbox_image):
    env = {**os.environ, "MACROHARD_SCRIPTED_LATENCY_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "macrohard.cli", "demo", "--workspaces", "ws"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    seen = ""
    while "engineer" not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    os.killpg(proc.pid, signal.SIGINT)
    out = seen + proc.communicate(timeout=180)[0]
    assert proc.returncode == 4, out
    assert "paused: paused by the user (Ctrl-C)" in out and "resume it:  macrohard resume" in out
    assert "raise" not in out.split("paused: paused by the user")[1]  # no limit stopped it


def test_a_closed_output_pipe_pauses_the_run_instead_of_failing_it(tmp_path, sandbox_image):
    env = {**os.environ, "MACROHARD_SCRIPTED_LATENCY_S": "0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "macrohard.cli", "demo", "--workspaces", "ws"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline()  # `macrohard demo | head -1`
    proc.stdout.close()
    deadline = time.monotonic() + 180
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.2)
    record = run_json(tmp_path)
    assert proc.returncode == 4, proc.stderr.read().decode()
    assert record["status"] == "paused" and "nothing reads the output" in record["paused_reason"]
    assert record.get("failure") is None

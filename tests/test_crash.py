"""Kill the run with SIGKILL at several points, resume it, and compare with a run never killed.

Real processes, real Docker, real git and LangGraph checkpoints; the model is scripted
(with a simulated latency, so a kill can land inside a model call).
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from macrohard._resources import resource_dir
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

DEMO = resource_dir("demo")


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    """The demo, with one slow sandbox command to be killed in the middle of."""
    data = yaml.safe_load((DEMO / "script.yaml").read_text())
    data["engineer"]["T-1"][1]["calls"].insert(0, {"run_shell": {"command": "sleep 2; echo slept"}})
    path = tmp_path_factory.mktemp("script") / "script.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def macrohard(folder: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MACROHARD_SCRIPTED_LATENCY_S": "0.15"}
    return subprocess.Popen(
        [sys.executable, "-m", "macrohard.cli", *args, "--workspaces", "ws"], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def run_folder(folder: Path) -> Path:
    (run,) = (folder / "ws").iterdir()
    return run


def wait_for(folder: Path, matches, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list((folder / "ws").glob("*/transcript.jsonl")) if (folder / "ws").is_dir() else []
        if runs:
            for line in runs[0].read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if matches(event):
                    return
        time.sleep(0.01)
    raise AssertionError("the kill point never came")


def outcome(run: Path) -> tuple[str, Counter, set]:
    tree = subprocess.run(["git", "ls-tree", "-r", "main"], cwd=run / "repo", capture_output=True, text=True).stdout
    history = GitWorkspace(run).history("main")
    merges = {c.trailers.get("Macrohard-Ticket") for c in history if c.parents == 2}
    return tree, Counter((c.author, c.subject) for c in history), merges


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, script, sandbox_image):
    folder = tmp_path_factory.mktemp("baseline")
    finish(macrohard(folder, "run", str(DEMO / "spec.md"), "--script", str(script)))
    return outcome(run_folder(folder))


KILL_POINTS = {
    "between nodes": (lambda e: e["kind"] == "node" and e["data"].get("node") == "tester", 0.0),
    "during a sandbox command": (
        lambda e: e["kind"] == "model.response" and "sleep 2" in json.dumps(e["data"]["message"]), 0.6
    ),
    "during a model call": (lambda e: e["kind"] == "model.request" and e.get("ticket") == "T-3", 0.05),
    "right after a commit": (lambda e: e["kind"] == "git.commit" and e.get("ticket") == "T-2", 0.0),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_killed_run_resumes_to_the_same_result(tmp_path, script, uninterrupted, docker_client, point):
    matches, delay = KILL_POINTS[point]
    proc = macrohard(tmp_path, "run", str(DEMO / "spec.md"), "--script", str(script))
    wait_for(tmp_path, matches)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = run_folder(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # as a crash leaves it

    out = finish(macrohard(tmp_path, "resume", run.name))
    assert "Run " + run.name + ": done" in out

    assert outcome(run) == uninterrupted  # same tree, same commits (none lost, none twice), same merges
    assert verify_chain(run / "transcript.jsonl") is None
    resumed = [e for e in read_events(run / "transcript.jsonl") if e.kind == "run.resumed"]
    assert len(resumed) == 1 and resumed[0].data["previous_status"] == "running"
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={run.name}"}) == []


def test_ctrl_c_pauses_after_the_current_step_and_twice_stops_at_once(tmp_path, script, uninterrupted, docker_client):
    proc = macrohard(tmp_path, "run", str(DEMO / "spec.md"), "--script", str(script))
    wait_for(tmp_path, lambda e: e["kind"] == "node" and e["data"].get("node") == "engineer")
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == 4, out  # paused: README, Exit codes
    run = run_folder(tmp_path)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "paused" and "Ctrl-C" in record["paused_reason"], out
    assert "resume it:" in out

    resumed = macrohard(tmp_path, "resume", run.name)
    wait_for(tmp_path, lambda e: e["kind"] == "run.resumed")
    time.sleep(0.3)
    os.killpg(resumed.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(resumed.pid, signal.SIGINT)
    out, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 130, out.decode()
    assert json.loads((run / "run.json").read_text())["status"] == "paused"

    assert "Run " + run.name + ": done" in finish(macrohard(tmp_path, "resume", run.name))
    assert outcome(run) == uninterrupted
    assert verify_chain(run / "transcript.jsonl") is None
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={run.name}"}) == []


def test_sigterm_stops_the_run_as_paused_and_cleans_up(tmp_path, script, uninterrupted, docker_client):
    proc = macrohard(tmp_path, "run", str(DEMO / "spec.md"), "--script", str(script))
    wait_for(tmp_path, lambda e: e["kind"] == "sandbox.start")
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()
    run = run_folder(tmp_path)
    assert json.loads((run / "run.json").read_text())["status"] == "paused"
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={run.name}"}) == []
    assert "Run " + run.name + ": done" in finish(macrohard(tmp_path, "resume", run.name))
    assert outcome(run) == uninterrupted

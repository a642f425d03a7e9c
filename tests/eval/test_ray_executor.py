"""`macrohard eval --executor ray` on a real local Ray cluster (a head and two worker nodes offering `docker`),
with real Docker sandboxes: the per-case scores equal the local executor's, each case's node is shown and
recorded, and a worker killed mid-case is replaced, its case resumed from its checkpoint with no commit lost or
made twice; `macrohard batch` of plain runs ends there as it does locally; an unreachable cluster is one line
of error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cases import BUNDLED
from macrohard.eval.executor import LocalExecutor
from macrohard.eval.runner import EvalOptions, EvalRun
from macrohard.sandbox.docker import DockerSandboxProvider
from macrohard.config import Settings
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

pytestmark = pytest.mark.ray
CASES = ("slugify", "cheat-edits-tests")  # an honest case (its worker is killed) and a cheating one


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head node (no `docker`, as a head often is) and two worker nodes with one `docker` slot each."""
    cluster_utils = pytest.importorskip("ray.cluster_utils", reason="Ray is not installed (the `ray` extra)")
    # A head started in this process installs Ray's own SIGTERM and SIGINT handlers here: the tests after these
    # (and the sandbox lifecycle's handlers) must find this process's as they were.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"docker": 1})
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    yield cluster.address
    cluster.shutdown()


def macrohard(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "macrohard.cli", *args], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_worker_after_its_first_commit(workspaces: Path, case: str, timeout: float = 120) -> int:
    """SIGKILL the Ray worker process driving `case`'s run (run.json names it) once the run has made a commit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in workspaces.glob(f"*-{case}"):
            transcript = run / "transcript.jsonl"
            if transcript.is_file() and '"kind":"git.commit"' in transcript.read_text().replace(" ", ""):
                owner = json.loads((run / "run.json").read_text())["owner"]
                pid = int(owner.rsplit(":", 2)[1])
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.02)
    raise AssertionError(f"{case}'s run never made a commit")


def scores(cases: list[dict]) -> dict[str, tuple]:
    return {c["name"]: (c["status"], c["acceptance_passed"], c["acceptance_total"], c["solved"], c["tamper"])
            for c in cases}


def commits(run: Path) -> Counter:
    return Counter((c.author, c.subject) for c in GitWorkspace(run).history("main"))


@pytest.mark.docker
def test_a_suite_on_the_cluster_scores_as_locally_even_with_a_worker_killed_mid_case(
    tmp_path: Path, ray_cluster: str, sandbox_image: str, docker_client, bundled_roles
) -> None:
    suite = tmp_path / "suite"
    for name in CASES:
        shutil.copytree(BUNDLED / name, suite / name)
    local = EvalRun.start(EvalOptions(suite=suite), tmp_path / "local", 2)
    provider = DockerSandboxProvider(Settings().sandbox, docker_client)
    expected = local.execute(LocalExecutor(2, lambda settings: provider))

    # A little latency per model call, so the kill lands inside the run, not after it.
    proc = macrohard(tmp_path, "eval", str(suite), "--executor", "ray", "--address", ray_cluster, "--workspaces", "ws",
                     "--json", "out.json", env={"MACROHARD_SCRIPTED_LATENCY_S": "0.2"})
    killed = kill_worker_after_its_first_commit(tmp_path / "ws", "slugify")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err

    report = json.loads((tmp_path / "out.json").read_text())
    assert report["executor"] == "ray" and report["parallel"] == 2  # the two nodes' `docker` slots
    assert scores(report["cases"]) == scores([c.model_dump() for c in expected.cases])
    by_name = {c["name"]: c for c in report["cases"]}
    assert by_name["slugify"]["retries"] == 1 and by_name["cheat-edits-tests"]["retries"] == 0
    assert all(c["node"] for c in report["cases"])
    assert "slugify: on node" in out  # the live view (lines, off a terminal) says where each case landed

    run = tmp_path / "ws" / by_name["slugify"]["run_id"]
    events = list(read_events(run / "transcript.jsonl"))
    (retry,) = [e for e in events if e.kind == "executor.retry"]
    assert retry.data["attempt"] == 1 and retry.data["previous_node"] and retry.data["node"] == by_name["slugify"]["node"]
    assert "worker" in retry.data["error"].lower()  # Ray's word for what happened to the one before
    resumed = [e for e in events if e.kind == "run.resumed"]
    assert len(resumed) == 1 and resumed[0].seq > retry.seq and resumed[0].data["previous_status"] == "running"
    assert verify_chain(run / "transcript.jsonl") is None
    # No commit lost or made twice: the same history as the local executor's run of the case.
    assert commits(run) == commits(tmp_path / "local" / f"{expected.eval_id}-slugify")
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    assert docker_client.containers.list(all=True, filters={"label": f"macrohard.run={run.name}"}) == []


def plain_runs(cases: list[dict]) -> dict[str, tuple]:
    return {c["name"]: (c["status"], c["released"], c["tickets_total"], c["tickets_merged"], c["tickets_failed"],
                        c["tickets_blocked"]) for c in cases}


@pytest.mark.docker
def test_a_batch_of_plain_runs_on_the_cluster_ends_as_locally(
    tmp_path: Path, ray_cluster: str, sandbox_image: str, docker_client, bundled_roles
) -> None:
    """`macrohard batch` fans plain runs (no acceptance tests: an acceptance/ in a case folder is not run) out the same way."""
    specs = [BUNDLED / name for name in CASES]
    local = EvalRun.start(EvalOptions(suite=Path("."), specs=specs), tmp_path / "local", 2)
    provider = DockerSandboxProvider(Settings().sandbox, docker_client)
    expected = local.execute(LocalExecutor(2, lambda settings: provider))
    assert [c.released for c in expected.cases] == [True, False]  # an honest run releases; the cheat lands nothing

    proc = macrohard(tmp_path, "batch", *map(str, specs), "--executor", "ray", "--address", ray_cluster,
                     "--workspaces", "ws", "--json", "out.json")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["kind"] == "batch" and report["executor"] == "ray" and report["parallel"] == 2
    assert plain_runs(report["cases"]) == plain_runs([c.model_dump() for c in expected.cases])
    assert all(c["node"] and c["acceptance_total"] == 0 and c["acceptance_on"] is None for c in report["cases"])
    assert "released 1 of 2" in " ".join(out.split()) and "slugify: on node" in out
    assert not (tmp_path / "ws" / "evals" / report["eval_id"] / "scoring").exists()  # nothing was scored


def test_an_unreachable_cluster_is_one_line_of_error(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (the `ray` extra)")
    started = time.monotonic()
    proc = macrohard(tmp_path, "eval", str(BUNDLED), "--executor", "ray", "--address", f"127.0.0.1:{free_port()}",
                     "--workspaces", "ws")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert err.startswith("error: no Ray cluster answers at 127.0.0.1:") and len(err.strip().splitlines()) <= 2, err
    assert "Traceback" not in err and time.monotonic() - started < 30
    assert not (tmp_path / "ws").exists()  # no eval was started

    proc = macrohard(tmp_path, "eval", str(BUNDLED), "--executor", "ray", env={"RAY_ADDRESS": ""})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--executor ray needs the cluster's address" in err, out + err

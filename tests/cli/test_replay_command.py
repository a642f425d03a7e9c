"""`macrohard replay`: the demo again from its transcript, the same tree and tickets; forks; what it cannot answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from macrohard.company.run import RunPaths, checkpoint_values
from macrohard.transcript.log import read_events
from macrohard.workspace.git import GitWorkspace


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "workspaces").glob("*/run.json"))


def main_tree(run_dir: Path) -> str:
    return GitWorkspace(run_dir).query("ls-tree", "-r", "main")[1]


def tickets(run_dir: Path) -> dict[str, tuple[str, int]]:
    return {t.id: (t.status.value, t.attempts) for t in checkpoint_values(RunPaths(run_dir=run_dir))["tickets"].values()}


def test_the_demo_replayed_rebuilds_the_same_main_tree_and_tickets(cli, local_sandbox, tmp_path):
    assert cli("demo").exit_code == 0
    (demo,) = run_dirs(tmp_path)
    result = cli("replay", "latest")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # as wrapped for an 80-column terminal
    assert f"replay of {demo.name}, 26 recorded answers" in said
    (replayed,) = set(run_dirs(tmp_path)) - {demo}
    assert main_tree(replayed) == main_tree(demo) and main_tree(demo)
    assert tickets(replayed) == tickets(demo) == {"T-1": ("merged", 1), "T-2": ("merged", 2), "T-3": ("merged", 1)}
    record = json.loads((replayed / "run.json").read_text())
    assert record["status"] == "done" and record["script"] is None
    assert record["replay"]["run_id"] == demo.name and record["replay"]["answers"] == 26
    assert record["replay"]["from_event"] is None and record["replay"]["verified"] is True
    # Every answer came from the recording, with the recorded usage.
    recorded = [e.data["usage"] for e in read_events(demo / "transcript.jsonl") if e.kind == "model.response"]
    served = [e.data["usage"] for e in read_events(replayed / "transcript.jsonl") if e.kind == "model.response"]
    assert sorted(map(str, served)) == sorted(map(str, recorded))


def test_a_call_the_recording_cannot_answer_stops_the_replay_naming_it(cli, local_sandbox, tmp_path):
    assert cli("demo").exit_code == 0
    (demo,) = run_dirs(tmp_path)
    transcript = demo / "transcript.jsonl"
    lines = transcript.read_text().splitlines(keepends=True)
    # The recording loses the deployer's answers (as a run killed before its release would).
    kept = [line for line in lines if not ('"model.response"' in line and '"role":"deployer"' in line)]
    transcript.write_text("".join(kept))
    result = cli("replay", demo.name)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "warning: the recording fails verification" in said
    assert said.endswith(f"error: the recording of run {demo.name} has no answer for deployer/release attempt 1 step 1 "
                         "(the orchestrator asked what the recorded run never did; fork with --from EVENT to let a live "
                         "model go on)")
    (replayed,) = set(run_dirs(tmp_path)) - {demo}
    record = json.loads((replayed / "run.json").read_text())
    assert record["status"] == "failed" and "deployer/release attempt 1 step 1" in record["failure"]
    assert record["replay"]["verified"] is False


LIVE_DEPLOYER = {"deployer": {"release": [
    {"calls": [{"write_file": {"path": "RELEASE_NOTES.md", "content": "# textstats, forked\n"}}]},
    {"say": "Written by the live model."},
]}}


def test_a_fork_replays_up_to_its_event_then_the_live_model_goes_on(cli, local_sandbox, tmp_path):
    assert cli("demo").exit_code == 0
    (demo,) = run_dirs(tmp_path)
    first_release = next(e for e in read_events(demo / "transcript.jsonl")
                         if e.kind == "model.response" and e.role == "deployer")
    (tmp_path / "live.yaml").write_text(yaml.safe_dump(LIVE_DEPLOYER))
    result = cli("replay", demo.name, "--from", first_release.id, "--script", "live.yaml")
    assert result.exit_code == 0, result.output
    (forked,) = set(run_dirs(tmp_path)) - {demo}
    ws = GitWorkspace(forked)
    assert ws.show("main", "RELEASE_NOTES.md") == b"# textstats, forked\n"
    differs = [a for a, b in zip(main_tree(forked).splitlines(), main_tree(demo).splitlines(), strict=True) if a != b]
    assert [line.split("\t")[1] for line in differs] == ["RELEASE_NOTES.md"]
    record = json.loads((forked / "run.json").read_text())
    assert record["replay"]["from_event"] == first_release.id and record["replay"]["answers"] == 23
    assert record["script"] == str((tmp_path / "live.yaml").resolve())
    assert record["model"].startswith(f"replay of {demo.name} up to {first_release.id}, then scripted")


def test_a_live_model_without_a_fork_is_a_usage_mistake(cli, tmp_path):
    result = cli("replay", "latest", "--model", "gpt-4.1")
    assert result.exit_code == 2 and "add --from EVENT" in result.output
    result = cli("replay", "latest")
    assert result.exit_code == 1 and "there are no runs" in result.output


@pytest.mark.docker
@pytest.mark.e2e
def test_the_demo_replayed_on_docker_rebuilds_the_same_main_tree(tmp_path, monkeypatch, sandbox_image):
    from typer.testing import CliRunner

    from macrohard.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["demo"], catch_exceptions=False).exit_code == 0
    (demo,) = run_dirs(tmp_path)
    result = runner.invoke(app, ["replay", "latest"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (replayed,) = set(run_dirs(tmp_path)) - {demo}
    assert main_tree(replayed) == main_tree(demo)
    assert tickets(replayed) == tickets(demo)
    # T-2's verdict fails, then passes; after the pass its tests fail on its base, in the same sandbox.
    assert [e.data["exit_code"] == 0 for e in read_events(replayed / "transcript.jsonl")
            if e.kind == "sandbox.exec" and e.data.get("sandbox") == "verdict:T-2"] == [False, True, False]

"""`macrohard audit`: tamper detection, filters and cost, on a transcript written for the test."""

import json
import time

import pytest
from typer.testing import CliRunner

from macrohard.cli import app
from macrohard.company.run import RunRecord
from macrohard.transcript.log import TranscriptLog

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "workspaces" / "r1"
    log = TranscriptLog(folder / "transcript.jsonl", "r1")
    log.append("run.started")
    for ticket, role, tokens in (("T-1", "engineer", 100), ("T-1", "tester", 40), ("T-2", "engineer", 60)):
        log.append("model.response", role=role, ticket=ticket, model="gpt-x", latency_s=0.5,
                   usage={"prompt_tokens": tokens, "completion_tokens": 10}, message={"role": "assistant"})
        log.append("sandbox.exec", role=role, ticket=ticket, command="pytest", exit_code=0, duration_s=1.5)
    log.append("run.finished", status="done")
    (folder / "run.json").write_text(
        RunRecord(run_id="r1", spec_title="t", spec_sha256="0", model="gpt-x", status="done", created_at=time.time(),
                  finished_at=time.time(), transcript_head=log.head, settings={}).model_dump_json()
    )
    return folder


def lines(folder):
    return (folder / "transcript.jsonl").read_text().splitlines()


def write(folder, rows):
    (folder / "transcript.jsonl").write_text("\n".join(rows) + "\n")


def verify():
    return runner.invoke(app, ["audit", "r1", "--verify"])


def test_an_intact_run_verifies(run_dir):
    result = verify()
    assert result.exit_code == 0 and "verified: 8 events" in result.output and "run.json" in result.output


def test_an_edited_event_is_named(run_dir):
    rows = lines(run_dir)
    event = json.loads(rows[3])
    event["data"]["usage"]["prompt_tokens"] = 1
    rows[3] = json.dumps(event)
    write(run_dir, rows)
    result = verify()
    assert result.exit_code == 1 and "line 4 (ev-000004)" in result.output and "edited" in result.output


def test_a_removed_event_is_found(run_dir):
    rows = lines(run_dir)
    write(run_dir, rows[:2] + rows[3:])
    result = verify()
    assert result.exit_code == 1 and "line 3 (ev-000004)" in result.output and "events 3..3" in result.output


def test_an_inserted_event_is_found(run_dir):
    rows = lines(run_dir)
    write(run_dir, rows[:2] + [rows[1]] + rows[2:])
    result = verify()
    assert result.exit_code == 1 and "line 3 (ev-000002)" in result.output and "inserted or reordered" in result.output


def test_reordered_events_are_found(run_dir):
    rows = lines(run_dir)
    rows[2], rows[3] = rows[3], rows[2]
    write(run_dir, rows)
    result = verify()
    assert result.exit_code == 1 and "line 3 (ev-000004)" in result.output


def test_a_cut_off_tail_and_an_appended_event_are_found(run_dir):
    rows = lines(run_dir)
    write(run_dir, rows[:-2])
    result = verify()
    assert result.exit_code == 1 and "truncated" in result.output
    write(run_dir, rows)
    TranscriptLog(run_dir / "transcript.jsonl", "r1").append("node", node="forged")
    result = verify()
    assert result.exit_code == 1 and "appended after the run finished" in result.output


def test_filters_and_cost(run_dir):
    (run_dir.parent.parent / "macrohard.toml").write_text('[prices."gpt-x"]\ninput = 1000000.0\noutput = 0.0\n')
    out = json.loads(runner.invoke(app, ["audit", "r1", "--json", "--role", "engineer"]).output)
    assert out["totals"]["model_calls"] == 2 and out["totals"]["prompt_tokens"] == 160
    assert out["totals"]["cost_usd"] == pytest.approx(160.0)
    assert set(out["by_ticket"]) == {"T-1", "T-2"}
    out = json.loads(runner.invoke(app, ["audit", "r1", "--json", "--ticket", "T-1", "--kind", "sandbox"]).output)
    assert out["totals"]["sandbox_commands"] == 2 and out["totals"]["model_calls"] == 0
    assert out["totals"]["sandbox_s"] == pytest.approx(3.0)
    out = json.loads(runner.invoke(app, ["audit", "r1", "--json", "--until", "-1"]).output)
    assert out["events"] == 0
    text = runner.invoke(app, ["audit", "r1"]).output
    assert "engineer" in text and "status: done" in text

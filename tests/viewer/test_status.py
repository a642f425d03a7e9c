"""What the viewer says about how a run stands: why it failed, who works on a ticket, where the tokens went."""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from macrohard.company.run import RunRecord
from macrohard.transcript.log import TranscriptLog
from macrohard.viewer import create_app


def client(workspaces: Path) -> TestClient:
    return TestClient(create_app(workspaces, allowed_hosts=["testserver"]))


def new_run(workspaces: Path, run_id: str, *, status: str = "running", failure: str | None = None) -> TranscriptLog:
    (workspaces / run_id).mkdir(parents=True)
    log = TranscriptLog(workspaces / run_id / "transcript.jsonl", run_id)
    record = RunRecord(run_id=run_id, spec_title="textstats", spec_sha256="0", model="scripted", status=status,
                       failure=failure, created_at=time.time(), settings={},
                       finished_at=time.time() if status in ("done", "partial", "failed") else None)
    (workspaces / run_id / "run.json").write_text(record.model_dump_json())
    log.append("run.started", spec_title="textstats", model="scripted")
    return log


def planning_failed(workspaces: Path, failure_in_transcript: bool) -> None:
    reason = "planning failed: bad arguments for add_ticket: acceptance_criteria: Field required"
    log = new_run(workspaces, "failed-run", status="failed", failure=reason)
    log.append("model.request", role="product_manager", task="plan", step=1, n_messages=2,
               messages=[{"role": "system", "content": "plan"}, {"role": "user", "content": "spec"}])
    log.append("model.response", role="product_manager", task="plan", step=1, model="scripted", latency_s=0.1,
               usage={"prompt_tokens": 500, "completion_tokens": 40}, message={"role": "assistant", "content": "done"})
    log.append("run.finished", status="failed", failure=reason if failure_in_transcript else None, tickets={})


def test_a_failed_run_says_why_in_a_banner_and_in_the_run_list(tmp_path):
    for in_transcript in (True, False):  # the transcript's reason, else run.json's
        workspaces = tmp_path / str(in_transcript)
        planning_failed(workspaces, in_transcript)
        web = client(workspaces)
        html = web.get("/runs/failed-run").text
        banner = re.search(r'<div class="banner failed" role="alert" id="failure">(.*?)</div>', html, re.S)
        assert banner is not None
        assert "This run failed:</strong> planning failed: bad arguments for add_ticket: acceptance_criteria: Field required" in banner.group(1)
        assert "acceptance_criteria: Field required" in web.get("/").text


def test_a_run_that_made_calls_for_no_ticket_charts_them(tmp_path):
    planning_failed(tmp_path, True)
    html = client(tmp_path).get("/runs/failed-run").text
    totals = html.split('id="totals"')[1].split('id="commits"')[0]
    assert "No model calls" not in totals
    assert "(no ticket)" in totals and "540" in totals  # the product manager's tokens, in the ticket chart and table


def test_a_chart_with_no_bars_of_a_finished_run_does_not_say_yet(tmp_path):
    log = new_run(tmp_path, "r", status="failed", failure="the process was told to exit")
    log.append("run.failed", error="the process was told to exit", error_type="SystemExit")
    totals = client(tmp_path).get("/runs/r").text.split('id="totals"')[1]
    assert "No model calls." in totals and "No model calls yet." not in totals


def test_a_card_in_progress_shows_its_role_and_step(tmp_path):
    log = new_run(tmp_path, "r")
    log.append("plan", role="product_manager", tickets=[{"id": "T-1", "title": "Counts", "depends_on": []}])
    log.append("node", ticket="T-1", node="engineer", attempt=1)
    log.append("model.response", role="engineer", ticket="T-1", task="T-1", step=3, model="scripted",
               usage={"prompt_tokens": 5, "completion_tokens": 1}, message={"role": "assistant"}, latency_s=0.1)
    html = client(tmp_path).get("/runs/r").text
    card = html.split('class="column col-in-progress"')[1].split('class="column')[0]
    assert 'data-ticket="T-1"' in card and '<p class="doing">engineer · step 3</p>' in card
    log.append("node", ticket="T-1", node="tester", attempt=1)
    card = client(tmp_path).get("/runs/r").text.split('class="column col-in-progress"')[1].split('class="column')[0]
    assert '<p class="doing">tester</p>' in card


def test_a_prefix_kind_filter_stays_selected(demo_run):
    web = client(demo_run.workspaces)
    html = web.get(f"/runs/{demo_run.run_id}", params={"kind": "model"}).text
    assert '<option value="model" selected>model.*</option>' in html
    assert html.count(" selected>") == 1
    html = web.get(f"/runs/{demo_run.run_id}", params={"kind": "verdict"}).text
    assert '<option value="verdict" selected>verdict</option>' in html


def test_the_totals_tables_add_up_and_their_rows_filter_the_timeline(demo_run):
    web = client(demo_run.workspaces)
    html = web.get(f"/runs/{demo_run.run_id}").text
    assert "?ticket=%28no+ticket%29#timeline" in html and "?role=orchestrator#timeline" in html
    no_ticket = web.get(f"/runs/{demo_run.run_id}", params={"ticket": "(no ticket)"}).text
    assert len(re.findall(r'<tr id="row-\d+"', no_ticket)) == sum(1 for e in demo_run.events if e.ticket is None)
    assert '<option value="(no ticket)" selected>(no ticket)</option>' in no_ticket
    orchestrator = web.get(f"/runs/{demo_run.run_id}", params={"role": "orchestrator"}).text
    assert len(re.findall(r'<tr id="row-\d+"', orchestrator)) == sum(
        1 for e in demo_run.events if e.role in (None, "orchestrator"))


def test_the_run_list_reloads_itself_only_while_there_is_something_to_wait_for(tmp_path, demo_run):
    refresh = '<meta http-equiv="refresh"'
    nothing = client(tmp_path / "not-yet")  # the folder need not exist yet
    page = nothing.get("/")
    assert page.status_code == 200 and "No runs yet" in page.text and refresh in page.text
    assert refresh not in client(demo_run.workspaces).get("/").text  # every run has ended
    new_run(tmp_path / "live", "r")
    assert refresh in client(tmp_path / "live").get("/").text

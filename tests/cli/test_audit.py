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


def test_audit_and_blame_warn_when_the_transcript_fails_verification(run_dir):
    rows = lines(run_dir)
    event = json.loads(rows[3])
    event["data"]["usage"]["prompt_tokens"] = 1
    rows[3] = json.dumps(event)
    write(run_dir, rows)
    for args in (["audit", "r1"], ["audit", "r1", "--json"], ["blame", "r1", "app.py"]):
        result = runner.invoke(app, args)
        assert "warning: this transcript fails verification at transcript line 4 (ev-000004)" in result.stderr, args
    assert runner.invoke(app, ["audit", "r1"]).exit_code == 0  # a warning, not a failure: --verify is the check
    assert "warning" not in runner.invoke(app, ["audit", "r1", "--verify"]).stdout


def test_an_intact_transcript_gets_no_warning(run_dir):
    assert "warning" not in runner.invoke(app, ["audit", "r1"]).stderr


def test_status_is_the_runs_whatever_the_filter(run_dir):
    for args in (["--role", "engineer"], ["--ticket", "T-2"], ["--kind", "sandbox"], ["--until", "-1"]):
        result = runner.invoke(app, ["audit", "r1", *args])
        assert result.exit_code == 0 and "status: done · " in result.stdout, args
        assert json.loads(runner.invoke(app, ["audit", "r1", "--json", *args]).stdout)["status"] == "done"
    assert "status: done · 4 of 8 events selected" in runner.invoke(app, ["audit", "r1", "--role", "engineer"]).stdout


def test_an_unknown_role_ticket_or_kind_is_an_error_naming_the_known_ones(run_dir):
    for args, known in ((["--role", "bogus"], "its roles are: engineer, orchestrator, tester"),
                        (["--ticket", "T-9"], "its tickets are: (no ticket), T-1, T-2"),
                        (["--kind", "modle"], "model, model.response")):
        result = runner.invoke(app, ["audit", "r1", *args])
        assert result.exit_code == 1, args
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: the run has no ") and known in line, line


def test_model_requests_are_listed_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = TranscriptLog(tmp_path / "workspaces" / "r2" / "transcript.jsonl", "r2")
    for step in (1, 2):
        log.append("model.request", role="engineer", ticket="T-1", task="T-1", step=step, n_messages=step + 1,
                   messages=[{"role": "user", "content": "go"}])
        log.append("model.response", role="engineer", ticket="T-1", task="T-1", step=step, model="m", latency_s=0.1,
                   usage={"prompt_tokens": 10, "completion_tokens": 1}, message={"role": "assistant"})
    requests = json.loads(runner.invoke(app, ["audit", "r2", "--json", "--kind", "model.request"]).stdout)
    assert [e["kind"] for e in requests["timeline"]] == ["model.request", "model.request"]
    assert "step 2: sends 1 new message(s) (user), 3 in all" in requests["timeline"][1]["summary"]
    both = json.loads(runner.invoke(app, ["audit", "r2", "--json", "--kind", "model"]).stdout)
    assert len(both["timeline"]) == 4
    plain_audit = json.loads(runner.invoke(app, ["audit", "r2", "--json"]).stdout)
    assert [e["kind"] for e in plain_audit["timeline"]] == ["model.response", "model.response"]  # answers only


def test_json_numbers_carry_no_float_noise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = TranscriptLog(tmp_path / "workspaces" / "r3" / "transcript.jsonl", "r3")
    for _ in range(3):
        log.append("sandbox.exec", role="tester", ticket="T-1", command="true", exit_code=0, duration_s=0.1)
        log.append("model.response", role="tester", ticket="T-1", model="m", latency_s=0.1,
                   usage={"prompt_tokens": 1, "completion_tokens": 1}, message={"role": "assistant"})
    text = runner.invoke(app, ["audit", "r3", "--json"]).stdout
    assert 0.1 + 0.1 + 0.1 != 0.3  # the noise there is to remove
    assert '"sandbox_s": 0.3,' in text and '"model_latency_s": 0.3,' in text
    assert "0.30000000000000004" not in text


def test_piped_lines_are_not_wrapped_and_summaries_are_words_not_dicts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    log = TranscriptLog(tmp_path / "workspaces" / "r4" / "transcript.jsonl", "r4")
    log.append("run.started", spec_title="t", model="m")
    log.append("agent.finished", role="engineer", ticket="T-1", task="T-1", finished=True, reason="done", steps=3,
               usage={"prompt_tokens": 10, "completion_tokens": 2},
               summary="Implemented the tokenizer with careful handling of every Unicode whitespace character. " * 3)
    log.append("custom.event", nested={"a": [1, 2], "b": "x"})
    out = runner.invoke(app, ["audit", "r4"]).stdout
    timeline = [line for line in out.splitlines() if " ev-0000" in line]
    assert len(timeline) == 3  # one line per event however long: a pipe is read by programs
    assert "{'" not in out and "'prompt_tokens'" not in out
    finished = timeline[1]
    assert finished.endswith(" …")  # cut to fit, at a word
    assert finished[: -len(" …")].split()[-1] in "Implemented the tokenizer with careful handling of every Unicode whitespace character.".split()
    assert 'nested={"a": [1, 2], "b": "x"}' in timeline[2]


def test_sandbox_time_adds_up_by_role_by_ticket_and_in_total(demo_run_dir, monkeypatch):
    monkeypatch.chdir(demo_run_dir.parent.parent)
    out = json.loads(runner.invoke(app, ["audit", demo_run_dir.name, "--workspaces", str(demo_run_dir.parent), "--json"]).stdout)
    total = out["totals"]
    for table in ("by_role", "by_ticket"):
        for column in ("sandbox_s", "model_calls", "prompt_tokens", "tool_calls", "sandbox_commands", "commits"):
            assert sum(row[column] for row in out[table].values()) == pytest.approx(total[column], abs=0.01), (table, column)
    assert total["sandbox_s"] > out["by_role"]["orchestrator"]["sandbox_s"] > 0
    assert out["by_ticket"]["(no ticket)"]["model_calls"] > 0  # planning and the release notes


def test_on_an_80_column_terminal_a_long_line_wraps_under_its_description(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    monkeypatch.chdir(tmp_path)
    log = TranscriptLog(tmp_path / "workspaces" / "r5" / "transcript.jsonl", "r5")
    log.append("tool.call", role="product_manager", tool="write_file", ok=True, call_id="c1",
               result="wrote docs/PRD.md (750 bytes) after careful consideration of every requirement in the spec")
    screen = io.StringIO()
    monkeypatch.setattr("macrohard.cli.audit.console", Console(file=screen, force_terminal=True, width=80, color_system=None))
    assert runner.invoke(app, ["audit", "r5"]).exit_code == 0
    first, *rest = screen.getvalue().split("By role")[0].rstrip("\n").splitlines()
    assert "ev-000001" in first and rest  # it did wrap...
    indent = first.index("product_manager:")
    assert all(line[:indent].strip() == "" for line in rest)  # ...under the description, never back to column 0
    assert all(len(line.rstrip()) <= 80 for line in (first, *rest))


def test_trace_to_a_collector_that_refuses_the_spans_fails_in_one_line(run_dir):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
    try:
        result = runner.invoke(app, ["trace", "r1", "--endpoint", endpoint])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: the collector at {endpoint} did not take the spans (0 of ") and "exported" not in line


def test_trace_to_the_console_says_how_many_spans(run_dir):
    result = runner.invoke(app, ["trace", "r1"])
    assert result.exit_code == 0 and '"name": "invoke_workflow macrohard"' in result.stdout
    assert result.stderr.strip().startswith("exported ") and result.stderr.strip().endswith(" spans")


def test_a_kind_this_run_happens_not_to_have_is_an_empty_audit_not_an_error(run_dir):
    result = runner.invoke(app, ["audit", "r1", "--kind", "dependencies"])  # the README's; no package was declared
    assert result.exit_code == 0 and "0 of " in result.output, result.output


def test_a_decision_is_worded_as_a_person_reads_it():
    from macrohard.transcript.describe import describe
    from macrohard.transcript.log import Event

    event = Event(seq=1, id="e1", ts=0.0, kind="approval", run_id="r1", prev_hash="",
                  data={"gate": "plan", "decision": "reject", "by": "ada", "comment": "split T-3"})
    assert describe(event) == "plan rejected by ada: split T-3"


def test_totals_show_only_what_the_selection_counts(run_dir):
    # The finish counts nothing: no table of zeros for it, nor the tables' legend.
    shown = runner.invoke(app, ["audit", "r1", "--kind", "run.finished"]).stdout
    assert "By role" not in shown and "Selected" not in shown and "tokens: in/out" not in shown
    assert "status: done · 1 of 8 events selected" in shown
    # Sandbox commands of T-1: its row and the total, and no row for T-2 or the run's other events.
    shown = runner.invoke(app, ["audit", "r1", "--kind", "sandbox", "--ticket", "T-1"]).stdout
    assert "By ticket" in shown and "T-1" in shown and "T-2" not in shown and "(no ticket)" not in shown
    assert "Selected" in shown and "tokens: in/out" in shown

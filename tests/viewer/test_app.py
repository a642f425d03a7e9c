"""The viewer's pages over a real demo run, through FastAPI's test client."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from macrohard.errors import ConfigError
from macrohard.transcript.log import TranscriptLog, read_events, verify_chain
from macrohard.viewer import create_app, exposure_warning, is_loopback, serve
from macrohard.viewer.live import Tail
from macrohard.viewer.prompt import conversation
from macrohard.viewer.runs import open_run
from macrohard.workspace.git import GitWorkspace

from .conftest import mark_stopped

HOSTILE = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def client(workspaces: Path, **kwargs) -> TestClient:
    return TestClient(create_app(workspaces, allowed_hosts=["testserver"], **kwargs))


@pytest.fixture(scope="module")
def web(demo_run) -> TestClient:
    return client(demo_run.workspaces)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="row-\d+"', html)


def test_the_run_list_shows_each_run_with_its_verification(web, demo_run):
    page = web.get("/")
    assert page.status_code == 200
    html = page.text
    assert f'href="/runs/{demo_run.run_id}"' in html
    assert "textstats" in html and "done" in html and "verified" in html
    assert "3 <span class=\"muted\">(3 merged)</span>" in html


def test_a_run_page_has_board_totals_chart_commits_and_timeline(web, demo_run):
    html = web.get(f"/runs/{demo_run.run_id}").text
    merged = html.split('class="column col-merged"')[1].split('class="column')[0]
    assert all(f'data-ticket="{t}"' in merged for t in ("T-1", "T-2", "T-3"))
    assert "attempt 2" in merged  # T-2 needed a second engineer attempt
    assert html.count("<svg") == 2 and 'class="prompt"' in html and "Tokens by role" in html
    for role in ("product_manager", "engineer", "tester", "deployer"):
        assert f"?role={role}#timeline" in html
    history = GitWorkspace(demo_run.dir).history("main")
    for commit in history:
        assert f"/commits/{commit.sha}" in html
    assert len(rows(html)) == len(demo_run.events)
    assert "data-stream" not in html  # finished: nothing to follow
    assert "—" in html.split('id="totals"')[1]  # no price table: no cost


def test_a_run_page_shows_the_release_its_image_and_smoke_check(web, demo_run):
    html = web.get(f"/runs/{demo_run.run_id}").text
    release = html.split('id="release"')[1].split("</section>")[0]
    tag = demo_run.first("git.tag")
    assert "<code>v0.1.0</code>" in release and f"/commits/{tag.data['sha']}" in release
    assert "<code>textstats:0.1.0</code>" in release and tag.data["image_id"][:19] in release
    assert "<code>python3 -m textstats docs/PRD.md --top 5</code>" in release and "exit code 0" in release
    assert 'class="pass">pass<' in release and "lines: " in release  # the output's tail, folded away


def test_a_failed_smoke_check_shows_on_the_run_page_with_its_output(demo_run, copy_run):
    from macrohard.transcript.log import TranscriptLog

    target = copy_run("smoke-failed", running=True)
    log = TranscriptLog(target / "transcript.jsonl", "smoke-failed")
    log.append("image.build", image="textstats:0.1.0", image_id="sha256:" + "a" * 64, dockerfile="default",
               reused=False, duration_s=1.0)
    log.append("smoke", image="textstats:0.1.0", image_id="sha256:" + "a" * 64, product="cli", command="textstats x",
               exit_code=1, passed=False, reason="it exited with code 1", output_tail=f"boom {HOSTILE}")
    html = client(target.parent).get("/runs/smoke-failed").text
    release = html.split('id="release"')[1].split("</section>")[0]
    assert "<span class=\"fail\">none</span>" in release and 'class="fail">FAIL<' in release
    assert "it exited with code 1" in release and "boom &lt;script&gt;" in release and HOSTILE not in html


def test_the_timeline_filters_by_role_ticket_and_kind(web, demo_run):
    tester = web.get(f"/runs/{demo_run.run_id}", params={"role": "tester"}).text
    assert len(rows(tester)) == sum(1 for e in demo_run.events if e.role == "tester")
    verdicts = web.get(f"/runs/{demo_run.run_id}", params={"ticket": "T-2", "kind": "verdict"}).text
    # A prefix: the two verdicts and the check of the passing one's tests on T-2's base.
    assert len(rows(verdicts)) == 3 == sum(1 for e in demo_run.events if e.ticket == "T-2" and e.kind.startswith("verdict"))
    assert "pass (4 tests, 0 failed, 0 errors, 0 skipped)" in verdicts and "FAIL (4 tests, 2 failed, 0 errors, 0 skipped)" in verdicts


def test_costs_show_when_a_price_table_is_given(demo_run):
    html = client(demo_run.workspaces, prices={"scripted": (1.0, 2.0)}).get(f"/runs/{demo_run.run_id}").text
    responses = [e for e in demo_run.events if e.kind == "model.response"]
    usd = sum(e.data["usage"]["prompt_tokens"] * 1.0 + e.data["usage"]["completion_tokens"] * 2.0 for e in responses) / 1e6
    assert f"${usd:.4f}" in html


def test_every_model_request_is_rebuilt_to_the_full_prompt(demo_run):
    requests = [e for e in demo_run.events if e.kind == "model.request"]
    assert requests
    for request in requests:
        conv = conversation(demo_run.events, request)
        assert conv is not None and conv.complete, request.id
        assert conv.messages[0].role == "system"


def test_a_model_answer_shows_its_prompt_tool_calls_results_and_commit(web, demo_run):
    commit = demo_run.first("git.commit", role="engineer", ticket="T-1")
    answer = next(e for e in demo_run.events if e.id == commit.data["cause"])
    assert answer.kind == "model.response"
    html = web.get(f"/runs/{demo_run.run_id}/events/{answer.id}").text
    assert "Answer" in html and "Prompt" in html
    assert "You are a software engineer" in html  # the system prompt, from the step-1 request
    assert "Ticket T-1: Line and word counts" in html  # the user prompt
    assert "wrote textstats/counts.py" in html  # a tool result fed back to the model
    assert f"/commits/{commit.data['sha']}" in html  # the commit this answer caused


def test_a_tool_call_links_to_its_caller_and_sandbox_run(web, demo_run):
    call = demo_run.first("tool.call", tool="run_shell")
    html = web.get(f"/runs/{demo_run.run_id}/events/{call.id}").text
    assert "Asked for by" in html and "Ran as" in html
    assert "exit code" in html


def test_a_sandbox_run_shows_command_and_output(web, demo_run):
    run = next(e for e in demo_run.events if e.kind == "sandbox.exec" and e.data["exit_code"] == 1)
    html = web.get(f"/runs/{demo_run.run_id}/events/{run.id}").text
    assert "python3 -m pytest" in html and 'class="fail">1<' in html
    assert "assert" in html  # the failing test's output


def test_a_commit_shows_its_diff_trailers_and_causing_event(web, demo_run):
    commit = demo_run.first("git.commit", role="engineer", ticket="T-2")
    html = web.get(f"/runs/{demo_run.run_id}/commits/{commit.data['sha']}").text
    assert "Macrohard-Event" in html
    assert f'class="event-trailer" href="/runs/{demo_run.run_id}/events/{commit.data["cause"]}"' in html
    assert "textstats/freq.py" in html and '<span class="add">' in html
    assert f"/events/{commit.id}" in html  # the git.commit event that recorded it


def test_a_merge_commit_shows_what_it_brought_into_main(web, demo_run):
    merge = demo_run.first("git.merge", ticket="T-3")
    html = web.get(f"/runs/{demo_run.run_id}/commits/{merge.data['sha'][:12]}").text
    assert "against the first parent" in html and "textstats/cli.py" in html


def test_a_finished_runs_stream_sends_what_is_new_then_ends(web, demo_run):
    last = demo_run.events[-1].seq
    body = web.get(f"/runs/{demo_run.run_id}/stream", params={"after": last - 2}).text
    sent = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [m["seq"] for m in sent if "seq" in m] == [last - 1, last]
    assert "event: state" in body and body.rstrip().endswith('data: {"status": "done"}')


def test_a_live_runs_stream_follows_appended_events(demo_run, copy_run):
    run_dir = copy_run(running=True)
    web = client(run_dir.parent, poll_s=0.05)
    log = TranscriptLog(run_dir / "transcript.jsonl", "demo-run")
    html = web.get("/runs/demo-run").text
    assert f'data-stream="/runs/demo-run/stream?after={log._seq}"' in html and ">live<" in html

    def company() -> None:
        time.sleep(0.3)
        log.append("node", node="report")
        log.append("run.finished", status="done", tickets={})
        log.append("sandbox.stop", duration_s=0.1)  # clean-up the run records after run.finished
        mark_stopped(run_dir)

    writer = threading.Thread(target=company)
    writer.start()
    with web.stream("GET", "/runs/demo-run/stream", params={"after": log._seq}) as response:
        body = "".join(response.iter_text())
    writer.join()
    assert "report" in body and '"status": "done"' in body
    assert body.index("report") < body.index("sandbox.stop") < body.index("event: end")


def test_model_output_is_escaped_everywhere(demo_run, copy_run):
    run_dir = copy_run()
    log = TranscriptLog(run_dir / "transcript.jsonl", "demo-run")
    request = log.append("model.request", role="engineer", ticket="T-9", task="T-9", step=1, n_messages=2,
                         messages=[{"role": "system", "content": HOSTILE}, {"role": "user", "content": HOSTILE}])
    answer = log.append("model.response", role="engineer", ticket="T-9", task="T-9", step=1, model=HOSTILE,
                        message={"role": "assistant", "content": HOSTILE,
                                 "tool_calls": [{"id": HOSTILE, "name": HOSTILE, "arguments": json.dumps({HOSTILE: HOSTILE})}]},
                        usage={"prompt_tokens": 1, "completion_tokens": 1}, latency_s=0.1)
    odd = log.append(HOSTILE, role=HOSTILE, ticket=HOSTILE, cause=HOSTILE, sha=HOSTILE)
    web = client(run_dir.parent)
    pages = [web.get(u) for u in ("/", "/runs/demo-run", "/runs/demo-run?role=" + HOSTILE,
                                  f"/runs/demo-run/events/{request.id}", f"/runs/demo-run/events/{answer.id}",
                                  f"/runs/demo-run/events/{odd.id}")]
    stream = web.get("/runs/demo-run/stream", params={"after": request.seq - 1})
    for response in [*pages, stream]:
        assert response.status_code == 200
        assert "<script>alert" not in response.text and "<img src=x" not in response.text, response.url
        assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "&lt;script&gt;alert" in pages[4].text and "&lt;script&gt;alert" in stream.text


def test_a_tampered_transcript_raises_the_banner(demo_run, copy_run):
    run_dir = copy_run()
    path = run_dir / "transcript.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    victim = next(i for i, line in enumerate(lines) if '"kind":"verdict"' in line and '"passed":false' in line)
    lines[victim] = lines[victim].replace('"passed":false', '"passed":true')
    path.write_text("".join(lines))
    event_id = json.loads(lines[victim])["id"]
    web = client(run_dir.parent)

    listing = web.get("/").text
    assert f"BROKEN at line {victim + 1}" in listing
    html = web.get("/runs/demo-run").text
    assert "This transcript fails verification" in html
    assert f"breaks at line {victim + 1}" in html and f"/events/{event_id}" in html
    assert "does not match its hash" in html
    assert re.search(rf'<tr id="row-{victim + 1}" class="[^"]*unverified', html)
    assert not re.search(rf'<tr id="row-{victim}" class="[^"]*unverified', html)
    assert "fails verification" in web.get(f"/runs/demo-run/events/{event_id}").text


def test_a_cut_off_tail_is_caught_by_the_head_run_json_recorded(demo_run, copy_run):
    run_dir = copy_run()
    path = run_dir / "transcript.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    html = client(run_dir.parent).get("/runs/demo-run").text
    assert "This transcript fails verification" in html and "truncated" in html


@pytest.mark.parametrize("tamper", ["edit", "remove", "insert", "garbage"])
def test_a_live_tail_flags_tampering_as_verify_chain_does(copy_run, tamper):
    run_dir = copy_run(running=True)
    tail = Tail(open_run(run_dir.parent, "demo-run"), {})
    tail.poll()
    assert tail.chain_break is None
    path = run_dir / "transcript.jsonl"
    log = TranscriptLog(path, "demo-run")
    for name in ("one", "two", "three"):
        log.append("node", node=name)
    lines = path.read_text().splitlines(keepends=True)
    match tamper:  # only the three lines the tail has not read yet
        case "edit":
            lines[-2] = lines[-2].replace('"two"', '"deux"')
        case "remove":
            del lines[-2]
        case "insert":
            lines.insert(-1, lines[-3])
        case "garbage":
            lines.insert(-1, "{not an event}\n")
    path.write_text("".join(lines))
    fresh = tail.poll()
    assert tail.chain_break is not None and tail.chain_break == verify_chain(path)
    assert fresh[-1][1]  # the last new row is marked unverified


def test_an_unreadable_line_is_reported_not_fatal(demo_run, copy_run):
    run_dir = copy_run()
    with (run_dir / "transcript.jsonl").open("a") as f:
        f.write("not json at all\n")
    html = client(run_dir.parent).get("/runs/demo-run").text
    assert "not a valid event" in html and f"line {len(demo_run.events) + 1}" in html


def test_nothing_outside_the_workspaces_folder_is_served(demo_run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "transcript.jsonl").write_text("")
    (outside / "run.json").write_text("{}")
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    (workspaces / "linked").symlink_to(outside)
    (workspaces / "real").mkdir()
    (workspaces / "real" / "transcript.jsonl").symlink_to(demo_run.dir / "transcript.jsonl")
    web = client(workspaces)
    # (the client itself folds a literal /../ away, so the escaped forms are what reach the app)
    for url in ("/runs/%2e%2e", "/runs/..%2F..%2Fetc", "/runs/.hidden", "/runs/linked",
                "/runs/linked/events/ev-000001", "/static/../app.py", "/static/%2e%2e/app.py"):
        assert web.get(url).status_code == 404, url
    assert "Not found" in web.get("/runs/linked").text
    # a transcript symlinked in from elsewhere is not read
    assert web.get("/runs/real/events/ev-000001").status_code == 404
    demo = client(demo_run.workspaces)
    for sha in ("--output=x", "HEAD", "main", "0" * 40, "abc", "../../etc/passwd"):
        assert demo.get(f"/runs/{demo_run.run_id}/commits/{sha}").status_code == 404, sha
    for event_id in ("ev-999999", "../run.json", "ev-1;rm"):
        assert demo.get(f"/runs/{demo_run.run_id}/events/{event_id}").status_code == 404, event_id
    assert demo.get(f"/runs/{demo_run.run_id}", params={"role": "x" * 500}).status_code == 422


def test_only_loopback_host_names_are_answered_by_default(demo_run):
    web = TestClient(create_app(demo_run.workspaces), base_url="http://127.0.0.1:8765")
    assert web.get("/").status_code == 200
    assert web.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert web.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_serving_beyond_loopback_needs_consent(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert exposure_warning("127.0.0.1") is None
    warning = exposure_warning("0.0.0.0")
    assert warning and "no authentication" in warning
    with pytest.raises(ConfigError, match="no authentication"):
        serve(tmp_path, host="0.0.0.0")


def test_templates_and_static_files_are_package_data():
    from importlib.resources import files

    package = files("macrohard.viewer")
    for name in ("base.html", "run.html", "event.html", "commit.html", "runs.html"):
        assert (package / "templates" / name).is_file()
    assert (package / "static" / "viewer.css").is_file() and (package / "static" / "viewer.js").is_file()


def test_the_demo_transcript_is_intact(demo_run):
    # The fixture is what the other tests take for a clean run.
    assert verify_chain(demo_run.dir / "transcript.jsonl") is None
    assert list(read_events(demo_run.dir / "transcript.jsonl"))[-1].kind == "run.finished"


def test_a_remote_viewer_needs_its_host_names_and_a_token(demo_run, tmp_path):
    with pytest.raises(ConfigError, match="--allowed-host"):
        serve(tmp_path, host="0.0.0.0", allow_remote=True)
    web = TestClient(create_app(demo_run.workspaces, allowed_hosts=["viewer.example", *("127.0.0.1",)], token="s3cret-token"),
                     base_url="http://viewer.example")
    assert web.get("/").status_code == 401
    assert web.get("/", params={"token": "wrong"}).status_code == 401
    assert web.get("/", headers={"host": "attacker.example"}, params={"token": "s3cret-token"}).status_code == 400
    first = web.get("/", params={"token": "s3cret-token"})
    assert first.status_code == 200 and "macrohard_token" in first.headers["set-cookie"]
    assert web.get(f"/runs/{demo_run.run_id}").status_code == 200  # the cookie carries it from then on


def test_a_run_whose_repo_git_is_a_link_or_a_gitdir_file_shows_no_other_repository(demo_run, tmp_path):
    import shutil

    from macrohard.viewer.gitread import RepoReader

    other = tmp_path / "other"
    shutil.copytree(demo_run.dir / "repo", other / "repo", symlinks=True)
    assert RepoReader(other / "repo").commits()  # a real .git inside its run folder: read
    fake = tmp_path / "fake" / "repo"
    fake.mkdir(parents=True)
    (fake / ".git").symlink_to(other / "repo" / ".git")
    assert RepoReader(fake).commits() == []
    (fake / ".git").unlink()
    (fake / ".git").write_text(f"gitdir: {other / 'repo' / '.git'}\n")
    assert RepoReader(fake).commits() == []


def test_git_output_is_cut_while_it_is_read(demo_run):
    from macrohard.workspace.git import GitWorkspace

    status, out, cut = GitWorkspace(demo_run.dir).query_capped("log", "-p", "--all", limit=100)
    assert status == 0 and cut and len(out.encode()) <= 100
    status, out, cut = GitWorkspace(demo_run.dir).query_capped("rev-parse", "HEAD", limit=100)
    assert status == 0 and not cut and len(out.strip()) == 40

"""Stopping and going on: budgets, approvals and resume, on the scripted model and a local sandbox."""

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.errors import ConfigError
from macrohard.models import ApprovalDecision
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

from fakes import LocalSandboxProvider

DEMO = resource_dir("demo")
SCRIPTS = Path(__file__).parent / "scripts"


def create(tmp_path: Path, spec: Path = DEMO / "spec.md", script: Path = DEMO / "script.yaml", **settings) -> CompanyRun:
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings)
    return CompanyRun.create(spec, s, script=script)


def tree(run: CompanyRun) -> str:
    return subprocess.run(["git", "ls-tree", "-r", "main"], cwd=run.paths.repo, capture_output=True, text=True).stdout


def commits(run: CompanyRun) -> Counter:
    return Counter((c.author, c.subject) for c in GitWorkspace(run.paths.run_dir).history("main"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = create(tmp_path_factory.mktemp("baseline"))
    assert run.execute(LocalSandboxProvider()).status == "done"
    return run


def test_a_token_budget_pauses_the_run_and_a_higher_one_finishes_it(tmp_path, uninterrupted):
    run = create(tmp_path, budget={"max_tokens": 5000})
    paused = run.execute(LocalSandboxProvider())
    assert paused.status == "paused" and "token budget reached" in paused.paused_reason
    # never past the limit by more than one call
    largest = max(e.data["usage"]["prompt_tokens"] + e.data["usage"]["completion_tokens"]
                  for e in read_events(run.paths.transcript) if e.kind == "model.response")
    assert 5000 <= paused.usage.total_tokens <= 5000 + largest

    again = CompanyRun.open(run.paths.run_dir).execute(LocalSandboxProvider())  # the same limit: stops at once
    assert again.status == "paused" and again.model_calls == paused.model_calls

    done = CompanyRun.open(run.paths.run_dir, {"max_tokens": 100_000}).execute(LocalSandboxProvider())
    assert done.status == "done"
    assert tree(run) == tree(uninterrupted)
    assert commits(run) == commits(uninterrupted)
    assert verify_chain(run.paths.transcript) is None
    kinds = [e.kind for e in read_events(run.paths.transcript)]
    assert kinds.count("run.paused") == 2 and kinds.count("run.resumed") == 2


def test_gates_wait_without_a_person_and_go_on_when_approved(tmp_path, uninterrupted):
    run = create(tmp_path, approve=["plan", "deploy"])
    first = run.execute(LocalSandboxProvider())
    assert first.status == "awaiting_approval" and first.awaiting["gate"] == "plan"
    # Each ticket with its criteria: what the person approves it to be held to.
    assert "T-3: Command line (after T-1, T-2)\n    - prints lines, words and the top N words of FILE, N defaulting to 3" \
        in first.awaiting["summary"]
    with pytest.raises(ConfigError, match="waiting for approval of its plan"):
        CompanyRun.open(run.paths.run_dir).execute(LocalSandboxProvider())

    second = CompanyRun.open(run.paths.run_dir).execute(
        LocalSandboxProvider(), decision=ApprovalDecision(decision="approve", by="alice")
    )
    assert second.status == "awaiting_approval" and second.awaiting["gate"] == "deploy"
    assert "textstats v0.1.0" in second.awaiting["summary"]
    assert second.release_tag is None  # nothing is tagged before the release is approved

    done = CompanyRun.open(run.paths.run_dir).execute(
        LocalSandboxProvider(), decision=ApprovalDecision(decision="approve", comment="ship it", by="bob")
    )
    assert done.status == "done" and done.release_tag == "v0.1.0"
    decisions = [(e.data["gate"], e.data["decision"], e.data["by"]) for e in read_events(run.paths.transcript) if e.kind == "approval"]
    assert decisions == [("plan", "approve", "alice"), ("deploy", "approve", "bob")]
    assert tree(run) == tree(uninterrupted)


def test_a_person_at_the_terminal_rejects_the_plan_and_it_is_planned_again(tmp_path):
    run = create(tmp_path, SCRIPTS / "conflict_spec.md", SCRIPTS / "replan_script.yaml", approve=["plan"])
    asked = []

    def decide(payload):
        asked.append(payload["gate"])
        if len(asked) == 1:
            assert "- T-1: both" in payload["summary"]
            return ApprovalDecision(decision="reject", comment="Make it one ticket per function.", by="carol")
        assert "- T-2: two" in payload["summary"]
        return ApprovalDecision(decision="approve", by="carol")

    done = run.execute(LocalSandboxProvider(), decide=decide)
    assert asked == ["plan", "plan"]
    assert done.status == "done"
    assert sorted((t.id, t.title, t.status) for t in done.tickets) == [("T-1", "one", "merged"), ("T-2", "two", "merged")]
    subjects = [c.subject for c in GitWorkspace(run.paths.run_dir).history("main")]
    assert "Plan: PRD and 2 tickets (revision 2)" in subjects
    feedback = [e for e in read_events(run.paths.transcript) if e.kind == "approval" and e.data["decision"] == "reject"]
    assert feedback[0].data["comment"] == "Make it one ticket per function." and feedback[0].data["by"] == "carol"


def test_a_done_run_cannot_be_resumed(uninterrupted):
    with pytest.raises(ConfigError, match="is done"):
        CompanyRun.open(uninterrupted.paths.run_dir).execute(LocalSandboxProvider())


def test_work_committed_just_before_a_crash_is_not_asked_for_again(tmp_path, uninterrupted, monkeypatch):
    real_commit = GitWorkspace.commit
    crashed = []

    def commit_then_die(self, path, message, prov):
        sha = real_commit(self, path, message, prov)
        if prov.role == "engineer" and prov.ticket == "T-1" and not crashed:
            crashed.append(sha)
            raise KeyboardInterrupt  # the process dies between the commit and the checkpoint
        return sha

    monkeypatch.setattr(GitWorkspace, "commit", commit_then_die)
    run = create(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run.execute(LocalSandboxProvider())
    monkeypatch.setattr(GitWorkspace, "commit", real_commit)
    asked_before = sum(1 for e in read_events(run.paths.transcript)
                       if e.kind == "model.request" and e.role == "engineer" and e.ticket == "T-1")

    done = CompanyRun.open(run.paths.run_dir).execute(LocalSandboxProvider())
    assert done.status == "done"
    events = list(read_events(run.paths.transcript))
    skipped = [e for e in events if e.kind == "node.skipped"]
    assert [(e.role, e.ticket, e.data["commit"]) for e in skipped] == [("engineer", "T-1", crashed[0])]
    asked_after = sum(1 for e in events if e.kind == "model.request" and e.role == "engineer" and e.ticket == "T-1")
    assert asked_after == asked_before  # the engineer was not asked again
    assert tree(run) == tree(uninterrupted) and commits(run) == commits(uninterrupted)


def test_a_crash_between_a_merge_and_mains_suite_resumes_with_the_real_merges(tmp_path, uninterrupted, monkeypatch):
    from macrohard.company.graph import Company

    real_suite = Company._main_verdict
    crashed = []

    def suite_then_die(self, base, ticket, **kwargs):
        if not crashed:
            crashed.append(self.workspace.head())
            raise KeyboardInterrupt  # killed after merging, before main's suite answered
        return real_suite(self, base, ticket, **kwargs)

    monkeypatch.setattr(Company, "_main_verdict", suite_then_die)
    run = create(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run.execute(LocalSandboxProvider())
    monkeypatch.setattr(Company, "_main_verdict", real_suite)

    done = CompanyRun.open(run.paths.run_dir).execute(LocalSandboxProvider())
    assert done.status == "done"
    assert tree(run) == tree(uninterrupted) and commits(run) == commits(uninterrupted)
    history = {c.sha: c for c in GitWorkspace(run.paths.run_dir).history("main")}
    merges = [e for e in read_events(run.paths.transcript) if e.kind == "git.merge"]
    assert len(merges) == 3
    for e in merges:
        assert history[e.data["sha"]].parents == 2 and history[e.data["sha"]].trailers["Macrohard-Ticket"] == e.ticket
    t3_prompt = next(e for e in read_events(run.paths.transcript)
                     if e.kind == "model.request" and e.role == "engineer" and e.ticket == "T-3")
    assert "textstats/counts.py" in t3_prompt.data["messages"][1]["content"]  # the merged tickets' files


def test_one_process_at_a_time_and_an_ended_run_is_not_resumed(tmp_path):
    from macrohard.company.run import _locked

    run = create(tmp_path, budget={"max_tokens": 3000})
    assert run.execute(LocalSandboxProvider()).status == "paused"
    opened = CompanyRun.open(run.paths.run_dir, {"max_tokens": 100_000})
    with _locked(opened.paths):  # another process is driving it
        with pytest.raises(ConfigError, match="driven by another macrohard process"):
            opened.execute(LocalSandboxProvider())

    partial = create(tmp_path / "p", max_attempts=1)  # T-2 fails its only attempt, T-3 is blocked
    assert partial.execute(LocalSandboxProvider()).status == "partial"
    with pytest.raises(ConfigError, match="is partial and has ended"):
        CompanyRun.open(partial.paths.run_dir).execute(LocalSandboxProvider())


def test_a_weaker_sandbox_in_run_json_is_refused_on_resume_unless_asked_for(tmp_path):
    import json

    run = create(tmp_path, budget={"max_tokens": 3000})
    assert run.execute(LocalSandboxProvider()).status == "paused"
    record = json.loads(run.paths.run_json.read_text())
    record["settings"]["sandbox"].update(network=True, cap_add=["SYS_ADMIN"], allow_root=True)
    run.paths.run_json.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="weaker than those it started with") as refused:
        CompanyRun.open(run.paths.run_dir, {"max_tokens": 100_000}).execute(LocalSandboxProvider())
    assert "network = true" in refused.value.message and "SYS_ADMIN" in refused.value.message
    assert "--allow-weaker-sandbox" in (refused.value.hint or "")
    resumed = CompanyRun.open(run.paths.run_dir, {"max_tokens": 100_000}, allow_weaker_sandbox=True)
    assert resumed.execute(LocalSandboxProvider()).status == "done"
    event = next(e for e in read_events(run.paths.transcript) if e.kind == "run.resumed")
    assert event.data["sandbox"]["network"] is True and any("network" in w for w in event.data["weaker_sandbox"])

"""The company graph end to end on the scripted model, with a local fake sandbox.

The same flow runs against the real Docker sandbox in tests/test_e2e.py.
"""

from pathlib import Path

import os

import pytest
import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

from fakes import LocalSandboxProvider

DEMO = resource_dir("demo")


SCRIPTS = Path(__file__).parent / "scripts"


def run_demo(tmp_path: Path, script: Path = DEMO / "script.yaml", spec: Path = DEMO / "spec.md", provider=None, **settings):
    provider = provider or LocalSandboxProvider()
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings)
    run = CompanyRun.create(spec, s, script=script)
    return run, run.execute(provider), provider


def test_demo_spec_becomes_a_released_repo(tmp_path):
    run, summary, provider = run_demo(tmp_path)
    assert summary.status == "done"
    assert {t.id: (t.status, t.attempts) for t in summary.tickets} == {
        "T-1": ("merged", 1), "T-2": ("merged", 2), "T-3": ("merged", 1)
    }
    assert summary.release_tag == "v0.1.0"

    history = GitWorkspace(run.paths.run_dir).history("main")
    merges = [c for c in history if c.parents == 2]
    assert len(merges) == 3
    authored = {c.author for c in history if "Macrohard-Event" in c.trailers}
    assert {"product_manager", "engineer", "tester", "deployer"} <= authored
    for c in history:
        if c.author != "macrohard":
            assert c.trailers["Macrohard-Run"] == run.run_id
            assert c.trailers["Macrohard-Role"] == c.author

    events = list(read_events(run.paths.transcript))
    assert verify_chain(run.paths.transcript) is None
    t2 = [e.data["passed"] for e in events if e.kind == "verdict" and e.ticket == "T-2"]
    assert t2 == [False, True]
    by_id = {e.id: e for e in events}
    for c in history:
        if "Macrohard-Event" in c.trailers and c.author in ("engineer", "tester", "deployer", "product_manager"):
            assert by_id[c.trailers["Macrohard-Event"]].kind == "model.response"
    assert all(e.data["usage"]["prompt_tokens"] > 0 for e in events if e.kind == "model.response")
    final = [e for e in events if e.kind == "final.suite"]
    assert len(final) == 1 and final[0].data["passed"] and final[0].data["tests"] >= 7
    assert events[-1].kind == "run.finished" and events[-1].data["release"]["sha"] == final[0].data["sha"]
    # every sandbox the run started was stopped, and the run's label was pruned
    assert all(box.stopped for box in provider.started)
    assert provider.pruned == [{"macrohard.run": run.run_id}]


def test_a_failed_ticket_blocks_its_dependants_and_the_run_ends_partial(tmp_path):
    script = yaml.safe_load((DEMO / "script.yaml").read_text())
    script["deployer"]["release"][1]["calls"][0]["write_file"]["content"] = "# textstats v0.1.0\n\nT-1 only.\n"
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    run, summary, _ = run_demo(tmp_path, path, max_attempts=1)
    status = {t.id: t.status for t in summary.tickets}
    assert status == {"T-1": "merged", "T-2": "failed", "T-3": "blocked"}
    assert summary.status == "partial"
    reasons = {t.id: t.reason for t in summary.tickets}
    assert "after 1 attempts" in reasons["T-2"] and "T-2" in reasons["T-3"]
    kinds = [e.kind for e in read_events(run.paths.transcript)]
    assert "ticket.failed" in kinds and "ticket.blocked" in kinds
    # T-3 was never started
    assert not any(e.kind == "node" and e.ticket == "T-3" for e in read_events(run.paths.transcript))


def test_a_run_folder_is_never_reused(tmp_path):
    provider = LocalSandboxProvider()
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"))
    (tmp_path / "ws" / "fixed").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        CompanyRun.create(DEMO / "spec.md", s, script=DEMO / "script.yaml", run_id="fixed").execute(provider)


def run_pair(tmp_path: Path, name: str, provider) -> tuple[CompanyRun, list]:
    """Run tests/company/scripts/<name>_*: two tickets side by side, where T-2 lands on its second attempt."""
    run, summary, _ = run_demo(tmp_path, SCRIPTS / f"{name}_script.yaml", SCRIPTS / f"{name}_spec.md", provider, max_parallel=2)
    assert summary.status == "done", summary.failure
    assert {t.id: (t.status, t.attempts) for t in summary.tickets} == {"T-1": ("merged", 1), "T-2": ("merged", 2)}
    return run, list(read_events(run.paths.transcript))


def test_parallel_tickets_editing_one_file_go_through_the_conflict_path(tmp_path, sandbox_provider):
    run, events = run_pair(tmp_path, "conflict", sandbox_provider)
    # Both pipelines overlapped: T-2's engineer started before T-1's tester finished.
    first: dict[tuple, int] = {}
    for e in events:
        if e.kind == "node":
            first.setdefault((e.ticket, e.data.get("node")), e.seq)
    finished_t1_tester = next(e.seq for e in events if e.kind == "agent.finished" and e.ticket == "T-1" and e.role == "tester")
    assert first[("T-2", "engineer")] < finished_t1_tester
    conflicts = [e for e in events if e.kind == "merge.conflict"]
    assert [(e.ticket, e.data["conflicts"]) for e in conflicts] == [("T-2", ["app.py"])]
    # A roles' sandbox per attempt, each stopped when its attempt ended...
    roles = [e for e in events if e.kind in ("sandbox.start", "sandbox.stop") and e.data.get("sandbox") == e.ticket]
    assert sorted(e.ticket for e in roles if e.kind == "sandbox.start") == ["T-1", "T-2", "T-2"]
    assert sorted(e.ticket for e in roles if e.kind == "sandbox.stop") == ["T-1", "T-2", "T-2"]
    # ...and every verdict in a fresh, read-only one of its own.
    verdicts = [e for e in events if e.kind == "sandbox.start" and e.data["sandbox"].startswith("verdict:")]
    assert verdicts and all(e.data["read_only"] for e in verdicts)
    main = (run.paths.repo / "app.py").read_text()
    assert "def hello" in main and "def goodbye" in main and "<<<<<<<" not in main
    assert [e.data["passed"] for e in events if e.kind == "main.suite"][-1] is True
    assert [e.data["passed"] for e in events if e.kind == "final.suite"] == [True]


def test_engineer_context_holds_the_ticket_and_what_it_builds_on(tmp_path):
    run, _, _ = run_demo(tmp_path)
    prompts = {}
    for e in read_events(run.paths.transcript):
        if e.kind == "model.request" and e.role == "engineer" and e.data["step"] == 1:
            prompts.setdefault(e.ticket, e.data["messages"][1]["content"])
    assert "textstats/counts.py" in prompts["T-3"] and "textstats/freq.py" in prompts["T-3"]
    assert "freq.py" not in prompts["T-1"]


def test_the_model_cannot_raise_a_commands_time_limit(tmp_path):
    script = yaml.safe_load((DEMO / "script.yaml").read_text())
    script["engineer"]["T-1"][1]["calls"][0]["run_shell"]["timeout_s"] = 1e9
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    run, summary, provider = run_demo(tmp_path, path)
    assert summary.status == "done"
    asked = [t for box in provider.started for t in box.timeouts]
    assert 1e9 not in asked and max(t for t in asked if t is not None) == Settings().sandbox.timeout_s


def test_a_failed_verdict_sends_its_ticket_to_the_next_round_without_holding_this_one(tmp_path):
    # T-1 and T-2 run side by side; T-2's tests fail on its first attempt.
    run, summary, _ = run_demo(tmp_path, max_parallel=2)
    assert summary.status == "done"
    events = list(read_events(run.paths.transcript))
    t1_merged = next(e.seq for e in events if e.kind == "git.merge" and e.ticket == "T-1")
    t2_retry = next(e.seq for e in events if e.kind == "node" and e.data.get("node") == "engineer"
                    and e.ticket == "T-2" and e.data.get("attempt") == 2)
    assert t1_merged < t2_retry  # T-1 was integrated without waiting for T-2's second attempt
    retry_prompt = next(e for e in events if e.kind == "model.request" and e.role == "engineer"
                        and e.ticket == "T-2" and e.data["step"] == 1 and e.seq > t2_retry)
    assert "The last attempt failed" in retry_prompt.data["messages"][1]["content"]


def test_context_names_files_a_full_listing_would_leave_out(tmp_path):
    from macrohard.agent.tools import MAX_LIST_ENTRIES
    from macrohard.company.pipeline import relevant_files
    from macrohard.models import Ticket

    for n in range(MAX_LIST_ENTRIES + 20):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"f{n:04}.txt").write_text("")
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz" / "late.py").write_text("")  # sorted after every data file
    ticket = Ticket(id="T-1", title="Fix zz/late.py", description="It is wrong.")
    relevant, total = relevant_files(tmp_path, ticket, ["data/f0001.txt", "gone.py"])
    assert relevant == ["data/f0001.txt", "zz/late.py"] and total == MAX_LIST_ENTRIES + 21


@pytest.mark.docker
def test_a_ticket_pipeline_cannot_see_or_change_another_tickets_files(tmp_path, docker_client, sandbox_image):
    from macrohard.config import SandboxSettings
    from macrohard.sandbox.docker import DockerSandboxProvider

    provider = DockerSandboxProvider(SandboxSettings(), docker_client)
    spec = tmp_path / "spec.md"
    spec.write_text("# one and two\n\nTwo constants in two modules.\n")
    run, summary, _ = run_demo(tmp_path, SCRIPTS / "isolation_script.yaml", spec, provider, max_parallel=2)
    assert summary.status == "done", summary.failure
    events = list(read_events(run.paths.transcript))
    probes = [e for e in events if e.kind == "tool.call" and e.ticket == "T-2" and e.role == "engineer" and e.data["step"] == 1]
    assert [(e.data["tool"], e.data["ok"]) for e in probes] == [("read_file", False), ("write_file", False), ("list_files", False)]
    assert all("outside the workspace" in e.data["result"] for e in probes)
    shell = next(e for e in events if e.kind == "sandbox.exec" and e.ticket == "T-2" and "probe-done" in e.data["command"])
    lines = shell.data["output_tail"].splitlines()
    # The sibling's .gitignore was not readable by either path, nor its folder writable.
    assert lines[:2] == [f"cat: {p}/.gitignore: No such file or directory" for p in ("../T-1", "/workspace/../T-1")]
    assert "__pycache__/" not in lines and "cannot create ../T-1/planted.py" in lines[2]
    root = lines[3 : lines.index("probe-done")]  # ls -a /: the container's own root
    assert "workspace" in root and not {"T-1", "T-2", "worktrees", "repo"} & set(root)
    # Nothing was planted anywhere the other ticket or main would see it.
    assert not list(run.paths.run_dir.rglob("planted.py"))
    assert {e.ticket for e in events if e.kind == "sandbox.start"} >= {"T-1", "T-2"}  # each had its own


def test_tickets_green_alone_but_red_together_find_the_culprit_and_send_it_back(tmp_path, sandbox_provider):
    run, events = run_pair(tmp_path, "red_main", sandbox_provider)
    suites = [(e.data.get("tickets") or e.ticket, e.data["passed"]) for e in events if e.kind == "main.suite"]
    # The batch, then one at a time: T-1 is green, T-2 is the culprit; T-2 again after its rework.
    assert suites == [(["T-1", "T-2"], False), ("T-1", True), ("T-2", False), ("T-2", True)]
    retry = next(e for e in events if e.kind == "model.request" and e.role == "engineer" and e.ticket == "T-2"
                 and e.data["step"] == 1 and "attempt 2" in e.data["messages"][1]["content"])
    assert "the verdict on main's whole suite failed" in retry.data["messages"][1]["content"]
    assert "assert 3 == 2" in retry.data["messages"][1]["content"]  # the failure itself, from main's suite
    # Main holds exactly one merge per ticket: the red ones were undone.
    history = GitWorkspace(run.paths.run_dir).history("main")
    merges = [c.trailers["Macrohard-Ticket"] for c in history if c.parents == 2 and c.author == "orchestrator"]
    assert sorted(merges) == ["T-1", "T-2"]
    assert (run.paths.repo / "util.py").read_text() == "def f():\n    return 2\n"
    assert [e.data["passed"] for e in events if e.kind == "final.suite"] == [True]


def test_a_ticket_whose_engineer_changes_nothing_fails_without_a_testers_turn(tmp_path):
    # Its tests could only pass without it: nothing goes to the tester or the verdict.
    script = {
        "product_manager": {"plan": [
            {"calls": [
                {"add_ticket": {"title": "check", "description": "Check that nothing is needed.", "acceptance_criteria": ["nothing changes"]}},
                {"add_ticket": {"title": "then", "description": "Add then.py.", "acceptance_criteria": ["then.py exists"], "depends_on": ["T-1"]}},
            ]},
            {"say": "Planned."},
        ]},
        "engineer": {"T-1": [{"say": "Nothing to change."}]},
        "tester": {"T-1": [
            {"calls": [{"write_file": {"path": "tests/test_check.py", "content": "def test_nothing():\n    assert 1 + 1 == 2\n"}}]},
            {"say": "Tested."},
        ]},
        "deployer": {"release": [{"say": "Released."}]},
    }
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    spec = tmp_path / "spec.md"
    spec.write_text("# nothing\n\nOne check, then one file.\n")
    run, summary, _ = run_demo(tmp_path, path, spec, max_attempts=1)
    assert summary.status == "failed"
    status = {t.id: t.status for t in summary.tickets}
    assert status == {"T-1": "failed", "T-2": "blocked"}
    reasons = {t.id: t.reason for t in summary.tickets}
    assert reasons["T-1"] == "its engineer produced nothing after 1 attempts"
    assert summary.failure == "no ticket landed: T-1 failed (its engineer produced nothing after 1 attempts); T-2 blocked (depends on T-1, which did not land)"
    events = list(read_events(run.paths.transcript))
    assert not any(e.kind in ("verdict", "git.tag") for e in events)
    assert not any(e.kind == "node" and e.data.get("node") == "tester" for e in events)


def test_a_worktree_over_its_limits_loses_that_attempts_work_and_the_next_attempt_is_told(tmp_path):
    script = {
        "product_manager": {"plan": [{"calls": [{"add_ticket": {"title": "one", "description": "one.py with ONE = 1.",
                                                                 "acceptance_criteria": ["ONE == 1"]}}]}, {"say": "Planned."}]},
        "engineer": {"T-1": [
            {"calls": [{"run_shell": {"command": "mkdir -p junk && for i in $(seq 1 60); do echo $i > junk/$i; done"}}]},
            {"say": "Done."},
            {"expect": "over its limits", "calls": [{"write_file": {"path": "one.py", "content": "ONE = 1\n"}}]},
            {"say": "Done, without the junk."},
        ]},
        "tester": {"T-1": [{"say": "Nothing yet."},
                           {"calls": [{"write_file": {"path": "tests/test_one.py", "content": "from one import ONE\n\n\ndef test_one():\n    assert ONE == 1\n"}}]},
                           {"say": "Tested."}]},
        "deployer": {"release": [{"say": "Released."}]},
    }
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    spec = tmp_path / "spec.md"
    spec.write_text("# one\n\none.py with ONE = 1.\n")
    run, summary, _ = run_demo(tmp_path, path, spec, workspace={"max_files": 40})
    assert summary.status == "done", summary.failure
    events = list(read_events(run.paths.transcript))
    too_large = [e for e in events if e.kind == "worktree.too_large"]
    assert too_large and "more than 40 files" in too_large[0].data["reason"]
    assert not any("junk/" in f for f in GitWorkspace(run.paths.run_dir).tree_files("v0.1.0"))


def test_a_sandbox_that_cannot_be_frozen_is_stopped_before_host_git_runs(tmp_path):
    from fakes import LocalSandbox

    from macrohard.errors import SandboxError

    class Unfreezable(LocalSandboxProvider):
        def start(self, workdir, **kwargs):
            box = super().start(workdir, **kwargs)

            def pause():
                raise SandboxError("cannot pause sandbox: unable to freeze")

            box.pause = pause
            return box

    run, summary, provider = run_demo(tmp_path, provider=Unfreezable())
    assert summary.status == "done"
    failed = [e for e in read_events(run.paths.transcript) if e.kind == "sandbox.pause_failed"]
    assert failed and "unable to freeze" in failed[0].data["error"]
    events = list(read_events(run.paths.transcript))
    for f in failed:
        after = [e for e in events if e.seq > f.seq and e.ticket == f.ticket and e.kind in ("sandbox.stop", "git.commit")]
        assert after[0].kind == "sandbox.stop"  # stopped before git ran on its files
    assert all(isinstance(box, LocalSandbox) and box.stopped for box in provider.started)


def test_files_shown_at_a_gate_are_read_without_following_links(tmp_path):
    from macrohard.company.graph import _read

    (tmp_path / "host-secret").write_text("HOST SECRET\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(tmp_path / "host-secret", repo / "RELEASE_NOTES.md")
    shown = _read(repo, "RELEASE_NOTES.md")
    assert "HOST SECRET" not in shown and "could not be read" in shown
    (repo / "docs").mkdir()
    (repo / "docs" / "PRD.md").write_text("# plan\n")
    assert _read(repo, "docs/PRD.md") == "# plan\n"


def test_a_tickets_verdict_runs_beside_the_next_tickets_roles(tmp_path):
    # One ticket's roles at a time; its verdict and merge happen while the next ticket's roles work.
    run, summary, _ = run_demo(tmp_path, max_parallel=1, scripted_latency_s=0.2)
    assert summary.status == "done"
    events = list(read_events(run.paths.transcript))
    first = {}
    for e in events:
        if e.kind == "node" and e.ticket:
            first.setdefault((e.ticket, e.data.get("node"), e.data.get("attempt")), e.seq)
    finished = {(e.ticket, e.role, e.data["task"]): e.seq for e in events if e.kind == "agent.finished" and e.ticket}
    t1_judged, t2_started = first[("T-1", "judge", 1)], first[("T-2", "engineer", 1)]
    t1_merged = next(e.seq for e in events if e.kind == "git.merge" and e.ticket == "T-1")
    # They overlapped: each started before the other ended.
    assert t1_judged < finished[("T-2", "tester", "T-2")] and t2_started < t1_merged
    # Never two tickets' roles at once: max_parallel bounds the roles' work, not the judge's.
    active, most = set(), 0
    for e in events:
        if e.kind == "node" and e.data.get("node") == "engineer":
            active.add(e.ticket)
        elif e.kind == "agent.finished" and e.role == "tester":
            active.discard(e.ticket)
        most = max(most, len(active))
    assert most == 1


def test_what_the_last_judge_held_back_stops_only_once_the_deployer_is_on_its_way(tmp_path):
    # The last judge runs alone: the sandboxes it retired stop beside the deployer's model call,
    # not while the next step (dispatch, the deployer's prompt) is the critical path.
    run, summary, _ = run_demo(tmp_path, max_parallel=1)
    assert summary.status == "done"
    events = list(read_events(run.paths.transcript))
    last_merge = max(e.seq for e in events if e.kind == "git.merge")
    deployer = next(e.seq for e in events if e.kind == "node" and e.data.get("node") == "deployer")
    stops = [e.seq for e in events if e.kind == "sandbox.stop" and e.seq > last_merge]
    assert stops and min(stops) > deployer


def test_verdicts_start_their_test_command_ahead_and_release_that_same_command(tmp_path):
    run, summary, provider = run_demo(tmp_path)
    assert summary.status == "done"
    judged = [box for box in provider.started if box.labels["macrohard.ticket"].startswith("verdict:")]
    warmed = [box for box in judged if box.warmed]
    # Those prepared ahead (while the tester worked, or for main's next integration) were warmed...
    assert {box.labels["macrohard.ticket"] for box in warmed} >= {"verdict:T-1", "verdict:main"}
    for box in warmed:
        # ...with the very command the verdict then ran, so the runner releases the waiting one.
        assert box.commands == box.warmed[: len(box.commands)] and "--junitxml=" in box.warmed[0]
    assert any(box.commands for box in warmed)
    # A ticket's passing verdict is followed by its tests on the base, in the same sandbox, the command
    # warmed for each: between the two, what the verdict left running was ended, the waiting command kept.
    ticket_box = next(box for box in judged if box.labels["macrohard.ticket"] == "verdict:T-1")
    assert len(ticket_box.commands) == 2 and ticket_box.warmed == ticket_box.commands
    assert ticket_box.ends[0] is True
    assert not any(box.labels["macrohard.ticket"].startswith("base:") for box in provider.started)


def test_a_custom_test_command_is_not_warmed_unless_asked(tmp_path):
    command = "python3 -m pytest -q -p no:cacheprovider --junitxml={report}"
    run, summary, provider = run_demo(tmp_path, test_command=command)
    assert summary.status == "done"
    assert not any(box.warmed for box in provider.started)
    run, summary, provider = run_demo(tmp_path / "again", test_command=command, test_command_warm=True)
    assert any(box.warmed for box in provider.started)


def test_a_report_folder_too_deep_for_a_recursive_removal_does_not_end_the_run(tmp_path):
    # The code under test may fill the verdict's report folder with a tree deeper than
    # Python's recursion limit; removing it afterwards must neither fail the run nor follow anything.
    deep = ("python3 -c 'import os, sys; os.chdir(os.path.dirname(sys.argv[1]))\n"
            "for _ in range(1500): os.mkdir(\"a\"); os.chdir(\"a\")' {report} && ")
    command = deep + "python3 -m pytest -q -p no:cacheprovider --junitxml={report}"
    run, summary, provider = run_demo(tmp_path, test_command=command)
    assert summary.status == "done", summary.failure
    assert not any(p.name.startswith("verdict-") for p in (run.paths.run_dir / "verdicts").iterdir())

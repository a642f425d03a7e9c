"""The pipeline reads how each role's session ended: an unfinished attempt is not taken for done."""

from pathlib import Path

import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.transcript.log import read_events

from fakes import LocalSandboxProvider

GOOD = "def one():\n    return 1\n"
BAD = "def one():\n    return 2\n"
TEST = "from one import one\n\n\ndef test_one():\n    assert one() == 1\n"
ANNOUNCE = {"say": "I'll start by looking at the repository.", "announce": True}
NEVER = {"say": "(never reached)"}
PLAN = [{"calls": [{"add_ticket": {"title": "one", "description": "Add one() returning 1.",
                                   "acceptance_criteria": ["one() == 1"]}}]}, {"say": "One ticket."}]


def execute(tmp_path: Path, engineer: list[dict], tester: list[dict]) -> tuple[CompanyRun, list]:
    script = {"product_manager": {"plan": PLAN}, "engineer": {"T-1": engineer}, "tester": {"T-1": tester},
              "deployer": {"release": [{"say": "Released."}]}}
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script))
    spec = tmp_path / "spec.md"
    spec.write_text("# one\n\nA function one() that returns 1.\n")
    company = CompanyRun.create(spec, Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles")), script=path)
    summary = company.execute(LocalSandboxProvider())
    assert summary.status == "done", summary.failure
    return company, list(read_events(company.paths.transcript))


def first_prompt(events: list, role: str, attempt: int) -> str:
    requests = [e for e in events if e.kind == "model.request" and e.role == role and e.data["step"] == 1]
    return requests[attempt - 1].data["messages"][1]["content"]


def test_an_engineer_that_only_announces_goes_to_no_tester_and_the_next_attempt_is_told_why(tmp_path):
    engineer = [*[ANNOUNCE] * 4, NEVER,  # attempt 1: talks, never acts
                {"calls": [{"write_file": {"path": "one.py", "content": GOOD}}]}, {"say": "Done."}]
    # The script's sessions are attempts: the tester has none in attempt 1.
    tester = [NEVER, {"calls": [{"write_file": {"path": "tests/test_one.py", "content": TEST}}]}, {"say": "Tested."}]
    company, events = execute(tmp_path, engineer, tester)
    outcomes = [(e.data["outcome"], e.data["finished"]) for e in events if e.kind == "agent.finished" and e.role == "engineer"]
    assert outcomes == [("no_action", False), ("finished", True)]
    testers = [e.data["attempt"] for e in events if e.kind == "node" and e.data.get("node") == "tester"]
    assert testers == [2]  # no tester, and no verdict, for the attempt that produced nothing
    assert [e.data["attempt"] for e in events if e.kind == "verdict"] == [2]
    retry = first_prompt(events, "engineer", 2)
    assert "produced nothing to test" in retry and "replies in a row without a tool call" in retry


def test_a_tester_that_stops_unfinished_is_named_in_the_failure_the_next_attempt_reads(tmp_path):
    engineer = [{"calls": [{"write_file": {"path": "one.py", "content": BAD}}]}, {"say": "Done."},
                {"expect": "the tester did not finish", "calls": [{"write_file": {"path": "one.py", "content": GOOD}}]},
                {"say": "Fixed."}]
    tester = [{"calls": [{"write_file": {"path": "tests/test_one.py", "content": TEST}}]}, *[ANNOUNCE] * 4, NEVER,
              {"say": "The tests stand."}]
    company, events = execute(tmp_path, engineer, tester)
    verdicts = [e.data["passed"] for e in events if e.kind == "verdict"]
    assert verdicts == [False, True]
    assert "In this attempt the tester did not finish" in first_prompt(events, "engineer", 2)

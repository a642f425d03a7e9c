"""Planning with models that do not always finish: only a finished, buildable plan is accepted."""

from pathlib import Path

import pytest
import yaml

from macrohard._resources import resource_dir
from macrohard.company.planning import imply_dependencies, named_files, plan_problems
from macrohard.company.run import CompanyRun, load_record
from macrohard.config import Settings
from macrohard.errors import MacrohardError
from macrohard.models import Ticket
from macrohard.transcript.log import read_events

from fakes import LocalSandboxProvider

CODE = "def one():\n    return 1\n"
TEST = "from one import one\n\n\ndef test_one():\n    assert one() == 1\n"
TICKET = {"title": "one", "description": "Add one() returning 1.", "acceptance_criteria": ["one() == 1"]}
ANNOUNCE = {"say": "I'll start by reading the spec and then plan the work.", "announce": True}
# Ends the script's session; the loop never asks for it, having ended the session after the fourth announcement.
NEVER = {"say": "(never reached)"}


def script(plan_sessions: list[list[dict]]) -> dict:
    return {
        "product_manager": {"plan": [step for session in plan_sessions for step in session]},
        "engineer": {"T-1": [{"calls": [{"write_file": {"path": "one.py", "content": CODE}}]}, {"say": "Done."}]},
        "tester": {"T-1": [{"calls": [{"write_file": {"path": "tests/test_one.py", "content": TEST}}]}, {"say": "Tested."}]},
        "deployer": {"release": [{"say": "Released."}]},
    }


def run(tmp_path: Path, plan_sessions: list[list[dict]], **settings) -> CompanyRun:
    path = tmp_path / "script.yaml"
    path.write_text(yaml.safe_dump(script(plan_sessions)))
    spec = tmp_path / "spec.md"
    spec.write_text("# one\n\nA function one() that returns 1.\n")
    s = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **settings)
    return CompanyRun.create(spec, s, script=path)


def test_a_planner_that_announces_first_is_nudged_and_its_plan_accepted(tmp_path):
    company = run(tmp_path, [[ANNOUNCE, {"calls": [{"add_ticket": TICKET}]}, {"say": "One ticket."}]])
    assert company.execute(LocalSandboxProvider()).status == "done"
    events = list(read_events(company.paths.transcript))
    assert [e.data["why"] for e in events if e.kind == "agent.nudged" and e.role == "product_manager"] == ["no_call"]
    assert [len(e.data["tickets"]) for e in events if e.kind == "plan"] == [1]


def test_a_finish_without_a_ticket_is_refused_until_the_plan_has_one(tmp_path):
    company = run(tmp_path, [[
        # A finish written raw does not end the script's session: the loop decides whether it ends.
        {"calls": [{"tool": "finish", "raw": '{"summary": "Nothing to plan."}'}]},
        {"expect": "the plan has no ticket", "calls": [{"add_ticket": TICKET}]},
        {"say": "One ticket."},
    ]])
    assert company.execute(LocalSandboxProvider()).status == "done"
    refused = [e for e in read_events(company.paths.transcript)
               if e.kind == "tool.call" and e.data["tool"] == "finish" and e.role == "product_manager"]
    assert [e.data["ok"] for e in refused] == [False, True]


def test_an_unfinished_plan_is_not_accepted_and_the_next_session_is_told_why(tmp_path):
    # The first session adds a ticket but never finishes (it only announces); the second one finishes.
    first = [{"calls": [{"add_ticket": TICKET}]}, *[ANNOUNCE] * 4, NEVER]
    second = [{"expect": "ended before you finished it", "calls": [{"add_ticket": TICKET}]}, {"say": "Planned again."}]
    company = run(tmp_path, [first, second])
    summary = company.execute(LocalSandboxProvider())
    assert summary.status == "done", summary.failure
    events = list(read_events(company.paths.transcript))
    unfinished = [e for e in events if e.kind == "plan.unfinished"]
    assert [(e.data["attempt"], e.data["outcome"]) for e in unfinished] == [(1, "no_action")]
    assert [e.data["attempt"] for e in events if e.kind == "plan"] == [2]


def test_planning_that_never_finishes_stops_the_run_resumable_with_its_reason(tmp_path):
    never = [*[ANNOUNCE] * 4, NEVER]
    finishes = [{"calls": [{"add_ticket": TICKET}]}, {"say": "Planned at last."}]
    company = run(tmp_path, [never, never, finishes], max_attempts=2)
    with pytest.raises(MacrohardError, match="did not finish a plan in 2 sessions"):
        company.execute(LocalSandboxProvider())
    record = load_record(company.paths.run_dir)
    assert record.status == "failed" and "replies in a row without a tool call" in (record.failure or "")
    # Resumable: the third session (the script's) plans, and the run goes on to the end.
    resumed = CompanyRun.open(company.paths.run_dir).execute(LocalSandboxProvider())
    assert resumed.status == "done"
    plans = [e.data["attempt"] for e in read_events(company.paths.transcript) if e.kind == "plan"]
    assert plans == [3]


def test_the_ticket_limit_is_enforced_when_tickets_are_added(tmp_path):
    company = run(tmp_path, [[
        {"calls": [{"add_ticket": TICKET}, {"add_ticket": {**TICKET, "title": "two"}}]},
        {"expect": "the most allowed", "say": "One is enough."},
    ]], max_tickets=1)
    assert company.execute(LocalSandboxProvider()).status == "done"
    assert [len(e.data["tickets"]) for e in read_events(company.paths.transcript) if e.kind == "plan"] == [1]


def ticket(n: int, text: str, depends_on: list[str] | None = None) -> Ticket:
    return Ticket(id=f"T-{n}", title=f"t{n}", description=text, acceptance_criteria=["works"], depends_on=depends_on or [])


def test_tickets_that_could_run_at_once_and_name_one_file_get_an_implied_dependency():
    tickets = [
        ticket(1, "Create app/models.py with User."),
        ticket(2, "Add login() to app/models.py."),  # shares a file with T-1: waits for it
        ticket(3, "Write docs about e.g. v0.1.0 and the README.md."),  # no source path it shares
        ticket(4, "Extend login() in app/models.py.", ["T-2"]),  # already after T-2, so after T-1 too
    ]
    planned, implied = imply_dependencies(tickets)
    assert [(d.ticket, d.on, d.files) for d in implied] == [("T-2", "T-1", ["app/models.py"])]
    assert planned[1].depends_on == ["T-1"] and planned[3].depends_on == ["T-2"]
    assert named_files(tickets[2]) == {"README.md"}


def test_plan_problems_name_what_is_missing():
    assert plan_problems([], 5) == ["the plan has no ticket: add one with add_ticket for each unit of work"]
    blank = Ticket(id="T-1", title="x", description="y", acceptance_criteria=["  "])
    assert plan_problems([blank], 5) == ["T-1 has an empty acceptance criterion"]
    assert "more than the 1 allowed" in plan_problems([ticket(1, "a"), ticket(2, "b")], 1)[0]


def test_tickets_that_only_cite_the_same_document_do_not_wait_for_each_other():
    tickets = [ticket(1, "Words as docs/PRD.md defines them, in text/words.py."),
               ticket(2, "Counts as docs/PRD.md says, in text/counts.py.")]
    planned, implied = imply_dependencies(tickets, lambda path: not path.startswith("docs/"))
    assert implied == [] and planned[1].depends_on == []

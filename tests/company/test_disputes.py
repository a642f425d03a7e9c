"""Disputes: an engineer that believes a test contradicts its ticket says so instead of
changing the test; the tester rules, then the product manager, and the test changes."""

import yaml

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.transcript.log import read_events
from macrohard.workspace.git import GitWorkspace

from fakes import LocalSandboxProvider

CODE = "def total(items):\n    return sum(items)\n"
WRONG = "from calc import total\n\n\ndef test_empty():\n    assert total([]) is None\n"
RIGHT = "from calc import total\n\n\ndef test_empty():\n    assert total([]) == 0\n"


def script(tester_ruling: str) -> dict:
    return {
        "product_manager": {
            "plan": [{"calls": [{"add_ticket": {"title": "total", "description": "calc.py with total(items); total([]) is 0.",
                                                "acceptance_criteria": ["total([]) == 0"]}}]}, {"say": "One ticket."}],
            "T-1": [{"expect": "D-T-1-1", "calls": [{"read_file": {"path": "tests/test_calc.py"}}]},
                    {"expect": "is None", "calls": [{"rule_dispute": {"id": "D-T-1-1", "ruling": "change", "reason": "The ticket says total([]) is 0."}}]},
                    {"say": "Ruled."}],
        },
        "engineer": {"T-1": [
            {"calls": [{"write_file": {"path": "calc.py", "content": CODE}}]}, {"say": "Done."},
            {"expect": "is None", "calls": [{"dispute_test": {"test": "tests/test_calc.py::test_empty",
                                                              "reason": "The ticket says total([]) is 0, the test wants None."}}]},
            {"say": "Disputed the test."},
            {"expect": "ruled change by the product_manager", "say": "The code stands."},
        ]},
        "tester": {"T-1": [
            {"calls": [{"write_file": {"path": "tests/test_calc.py", "content": WRONG}}]}, {"say": "Tested."},
            {"expect": "D-T-1-1", "calls": [{"rule_dispute": {"id": "D-T-1-1", "ruling": tester_ruling, "reason": "I think so."}}]},
            {"say": "Ruled."},
            {"expect": "ruled change by the product_manager", "calls": [{"write_file": {"path": "tests/test_calc.py", "content": RIGHT}}]},
            {"say": "Fixed the test."},
        ]},
        "deployer": {"release": [{"say": "Released."}]},
    }


def test_a_dispute_the_tester_upholds_goes_to_the_product_manager_whose_ruling_changes_the_test(tmp_path):
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script("uphold")))
    (tmp_path / "spec.md").write_text("# calc\n\ntotal(items) sums a list; total([]) is 0.\n")
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), max_attempts=3)
    run = CompanyRun.create(tmp_path / "spec.md", settings, script=tmp_path / "script.yaml")
    summary = run.execute(LocalSandboxProvider())
    assert summary.status == "done", summary
    events = list(read_events(run.paths.transcript))
    raised = [e for e in events if e.kind == "dispute"]
    assert [(e.role, e.data["test"], e.data["attempt"]) for e in raised] == [("engineer", "tests/test_calc.py::test_empty", 2)]
    rulings = [(e.role, e.data["ruling"]) for e in events if e.kind == "dispute.ruling"]
    assert rulings == [("tester", "uphold"), ("product_manager", "change")]
    # The overturned attempt failed without a verdict; the next one's tester changed the test.
    verdicts = [e.data["attempt"] for e in events if e.kind == "verdict"]
    assert verdicts == [1, 3]
    assert GitWorkspace(run.paths.run_dir).show("v0.1.0", "tests/test_calc.py").decode() == RIGHT
    assert summary.tickets[0].attempts == 3

"""What the eval tests build cases from: the bundled suite, a small honest case's files and script."""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).parents[2] / "examples" / "suite"

CODE = "def one():\n    return 1\n"
TEST = "from one import one\n\n\ndef test_one():\n    assert one() == 1\n"
ACCEPTANCE = "from one import one\n\n\ndef test_one_is_one():\n    assert one() == 1\n\n\ndef test_one_is_an_int():\n    assert type(one()) is int\n"


def honest_script() -> dict:
    ticket = {"title": "one", "description": "Add one.py with one() returning 1.", "acceptance_criteria": ["one() == 1"]}
    return {
        "product_manager": {"plan": [{"calls": [{"add_ticket": ticket}]}, {"say": "One ticket."}]},
        "engineer": {"T-1": [{"calls": [{"write_file": {"path": "one.py", "content": CODE}}]}, {"say": "Done."}]},
        "tester": {"T-1": [{"calls": [{"write_file": {"path": "tests/test_one.py", "content": TEST}}]}, {"say": "Tested."}]},
        "deployer": {"release": [{"say": "Released."}]},
    }

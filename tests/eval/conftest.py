"""Building suites of cases in a temporary folder, and the bundled one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

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


@pytest.fixture
def make_case(tmp_path: Path) -> Callable[..., Path]:
    """make_case(name, spec=..., acceptance={file: text} or None, script=dict/str or None, settings=str or None)."""

    def make(
        name: str,
        *,
        spec: str | None = "# one\n\nA module one.py with one() returning 1.\n",
        acceptance: dict[str, str] | None = None,
        script: dict | str | None = "honest",
        settings: str | None = None,
        suite: str = "suite",
    ) -> Path:
        folder = tmp_path / suite / name
        folder.mkdir(parents=True)
        if spec is not None:
            (folder / "spec.md").write_text(spec)
        if acceptance is not None:
            (folder / "acceptance").mkdir()
            for file, text in acceptance.items():
                (folder / "acceptance" / file).write_text(text)
        if script == "honest":
            script = honest_script()
        if script is not None:
            (folder / "script.yaml").write_text(script if isinstance(script, str) else yaml.safe_dump(script))
        if settings is not None:
            (folder / "case.toml").write_text(settings)
        return folder

    return make


@pytest.fixture
def bundled_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts are written for the bundled roles, whatever ./roles holds."""
    from macrohard._resources import resource_dir

    monkeypatch.setenv("MACROHARD_ROLES_DIR", str(resource_dir("roles")))

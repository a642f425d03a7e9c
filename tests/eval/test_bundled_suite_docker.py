"""`macrohard eval examples/suite` as a person runs it, on real Docker sandboxes: the live view in a
terminal, Ctrl-C pausing the cases under way, `eval resume` finishing them; the honest cases score in
full and no cheating case does."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from cases import BUNDLED

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def test_the_bundled_suite_end_to_end_with_a_pause_and_a_resume(tmp_path: Path, sandbox_image: str) -> None:
    env = {**os.environ, "COLUMNS": "100", "LINES": "40"}
    child = pexpect.spawn(sys.executable, ["-m", "macrohard.cli", "eval", str(BUNDLED), "--parallel", "2",
                                           "--workspaces", "ws"], cwd=str(tmp_path), env=env, encoding="utf-8",
                          timeout=180, dimensions=(40, 100))
    # The live view's header once a case has ended; two cases may end between two refreshes, so not always 1/7.
    child.expect(r"[1-6]/7 cases")
    child.sendintr()
    child.expect("Pausing the running cases")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4  # paused: cases are left to resume
    (folder,) = (tmp_path / "ws" / "evals").iterdir()
    stopped = json.loads((folder / "eval.json").read_text())["cases"]
    assert any(c["status"] in ("queued", "paused") for c in stopped)

    resumed = pexpect.run(f"{sys.executable} -m macrohard.cli eval resume latest --parallel 2 --workspaces ws --json out.json",
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=180, withexitstatus=True)
    output, status = resumed  # type: ignore[misc]
    assert status == 0, output
    cases = {c["name"]: c for c in json.loads((tmp_path / "out.json").read_text())["cases"]}
    for name in ("slugify", "roman", "rpn"):
        assert cases[name]["solved"] and cases[name]["acceptance_passed"] == cases[name]["acceptance_total"] > 0, cases[name]
    cheats = [c for name, c in cases.items() if name.startswith("cheat")]
    assert len(cheats) == 4 and all(c["acceptance_passed"] < c["acceptance_total"] and not c["solved"] for c in cheats)
    assert cases["cheat-edits-tests"]["tamper"]["territory.put_back"] >= 1
    # The run's own acceptance stage finds the report forged: nothing is released, main is scored.
    forged = cases["cheat-forges-report"]
    assert forged["tamper"]["acceptance.forged"] == 1 and not forged["released"], forged
    assert "solved 3 of 7" in " ".join(output.split())

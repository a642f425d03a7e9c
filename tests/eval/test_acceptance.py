"""The eval's acceptance verdict: the canary taken out of the counts, a forged report caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from macrohard.company.acceptance import judged
from macrohard.eval.acceptance import folder_digest
from macrohard.models import TestReport

CANARY = "test_0a1b2c3d4e5f"


@pytest.fixture
def acceptance(tmp_path: Path) -> Path:
    folder = tmp_path / "acceptance"
    folder.mkdir()
    (folder / "test_a.py").write_text("def test_one():\n    pass\n\n\ndef test_two():\n    pass\n")
    return folder


def report(passed: list[str], failures: int = 1, exit_code: int = 1, **more: object) -> TestReport:
    ids = [f"macrohard_acceptance.test_a::{name}" for name in passed]
    tests = len(passed) + failures + int(more.pop("errors", 0)) + int(more.get("skipped", 0))  # type: ignore[call-overload]
    return TestReport(ticket=None, command="pytest", exit_code=exit_code, passed=False, duration_s=1, output_tail="",
                      report_found=True, tests=tests, failures=failures, passed_ids=ids, sha="abc", **more)


def test_every_hidden_test_passing_beside_a_failing_canary_passes(acceptance):
    got = judged(report(["test_one", "test_two"]), CANARY, acceptance)
    assert got["passed"] and got["reason"] == "" and not got["forged"]
    assert (got["tests"], got["failures"], got["missing"]) == (2, 0, [])


def test_a_canary_reported_passed_means_a_forged_report(acceptance):
    forged = report(["test_one", "test_two"], failures=0, exit_code=0)
    forged.passed_ids.append(f"macrohard_acceptance.{CANARY}::{CANARY}")
    forged.tests += 1
    got = judged(forged, CANARY, acceptance)
    assert not got["passed"] and got["forged"] and got["passed_ids"] == [] and got["tests"] == 2
    assert got["reason"] == "the test report was forged: a test that must fail was reported passed"


@pytest.mark.parametrize("case, reason", [
    (dict(passed=["test_one"], failures=2), "1 failed and 0 errors of 2 tests"),
    (dict(passed=["test_one"], skipped=1), "acceptance tests did not pass: test_two"),
    (dict(passed=["test_one", "test_two"], exit_code=0), "the test command exited 0, though the test that must fail did"),
    (dict(passed=["test_one", "test_two"], timed_out=True), "the test run timed out"),
])
def test_anything_else_wrong_fails_it_saying_what(acceptance, case, reason):
    assert judged(report(**case), CANARY, acceptance)["reason"] == reason


def test_no_report_at_all(acceptance):
    missing = TestReport(ticket=None, command="pytest", exit_code=2, passed=False, duration_s=1, output_tail="")
    got = judged(missing, CANARY, acceptance)
    assert not got["passed"] and got["reason"] == "the test run ended (exit code 2) without writing its report"
    assert got["missing"] == ["test_one", "test_two"] and got["tests"] == 0


def test_the_digest_changes_with_the_tests(acceptance):
    before = folder_digest(acceptance)
    (acceptance / "test_a.py").write_text("def test_one():\n    assert 0\n")
    assert folder_digest(acceptance) != before

"""Hidden acceptance tests, and the canary that tells a forged report from a real one.

The product's code runs inside the test process, so code written to lie can rewrite the
report (mark every test passed). Beside the hidden tests goes a canary: a test with a
random name that must fail. Reported passed, the report was forged and nothing in it
counts. It catches a product that rewrites every report; one that lies about some tests
only, knowing which, it cannot (README: what the verdict cannot guarantee). Used by the
release's acceptance stage (company/release.py) and by `macrohard eval`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from macrohard.company.verdict import missing_acceptance
from macrohard.models import TestReport

# Shared files a role may write whose runner sections could hide tests from the run.
ACCEPTANCE_HIDES = frozenset({"pyproject.toml", "setup.cfg"})
PYTEST_TESTS_FAILED = 1  # pytest's exit status when tests ran and some failed (the canary)


def canary_name() -> str:
    return f"test_{secrets.token_hex(6)}"


def write_canary(folder: Path, name: str) -> None:
    """A test that must fail, in a file and function of its own name, among the acceptance tests."""
    a, b = secrets.randbelow(10**6), secrets.randbelow(10**6) + 10**6
    (folder / f"{name}.py").write_text(f"def {name}():\n    assert {a} == {b}\n")


ACCEPTANCE_STACKS = ("python",)  # hidden tests, and their canary, are pytest files


def unsupported(sha: str, stack: str) -> dict[str, Any] | None:
    """The acceptance event's data when the product's stack cannot run hidden tests; None when it can."""
    if stack in ACCEPTANCE_STACKS:
        return None
    reason = (f"hidden acceptance tests run on the {', '.join(ACCEPTANCE_STACKS)} stack only, and this product is "
              f"built with the {stack} stack: none were run")
    return {"sha": sha, "passed": False, "reason": reason, "tests": 0, "failures": 0, "errors": 0, "skipped": 0,
            "missing": [], "forged": False, "exit_code": None, "event_id": None, "passed_ids": []}


def judged(report: TestReport, canary: str, acceptance: Path) -> dict[str, Any]:
    """The verdict on the hidden tests alone, the canary taken out: the acceptance event's data."""
    canary_passed = any(canary in i for i in report.passed_ids)
    passed_ids = [i for i in report.passed_ids if canary not in i]
    ran = report.report_found and report.tests > 0  # the canary is in the report's counts: taken out
    tests = max(0, report.tests - (1 if ran else 0))
    failures = max(0, report.failures - (1 if ran and not canary_passed else 0))
    missing = missing_acceptance(acceptance, passed_ids)
    if report.timed_out:
        reason = "the test run timed out"
    elif not report.report_found:
        reason = f"the test run ended (exit code {report.exit_code}) without writing its report"
    elif canary_passed:
        reason = "the test report was forged: a test that must fail was reported passed"
    elif failures or report.errors:
        reason = f"{failures} failed and {report.errors} errors of {tests} tests"
    elif missing or report.skipped:
        reason = f"acceptance tests did not pass: {', '.join(missing[:10]) or f'{report.skipped} skipped'}"
    elif report.exit_code != PYTEST_TESTS_FAILED:
        reason = f"the test command exited {report.exit_code}, though the test that must fail did"
    else:
        reason = ""
    return {
        "sha": report.sha, "passed": not reason, "reason": reason, "tests": tests, "failures": failures,
        "errors": report.errors, "skipped": report.skipped, "missing": missing, "forged": canary_passed,
        "exit_code": report.exit_code, "event_id": report.event_id,
        "passed_ids": [] if canary_passed else passed_ids,
    }



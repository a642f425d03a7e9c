"""The eval's own run of a case's hidden acceptance tests: on the released commit, or on main.

The same verdict as the run's release stage (company/release.py): the commit's tree
exported from git's objects without any test file or runner configuration a role wrote,
the acceptance folder copied in, the orchestrator's test command in a fresh read-only
sandbox, a machine-read report, every acceptance test function required to pass (none
skipped, deselected or cut short). The eval runs it itself, after the run, for two
reasons: a run that stopped before its acceptance stage is still scored, on main; and
the product's code runs inside the test process, so it could forge the report (mark
every test passed). Beside the hidden tests goes a canary, a test with a random name
that must fail: reported passed, the report was forged, and nothing in it counts.
Events go to a transcript of the eval's, never into the run's own (whose chain ended).
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.release import ACCEPTANCE_HIDES, RELEASE_VERSION
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.territories import TerritoryGuard
from macrohard.company.verdict import EXTRA_DIR, Verdicts, missing_acceptance
from macrohard.config import Settings
from macrohard.models import TestReport
from macrohard.roles import default_roles_dir, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.transcript.log import TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace

KEY = "acceptance:eval"
PYTEST_TESTS_FAILED = 1  # pytest's exit status when tests ran and some failed (the canary)


def folder_digest(folder: Path) -> str:
    """What the acceptance tests are: a run checked against other tests is checked again."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def tested_commit(workspace: GitWorkspace) -> tuple[str, str] | None:
    """(sha, "release") for the release tag's commit, else (sha, "main") for main's head; None without either."""
    if not (workspace.repo_dir / ".git").is_dir():
        return None
    for ref, on in ((f"{RELEASE_VERSION}^{{commit}}", "release"), ("main^{commit}", "main")):
        status, out = workspace.query("rev-parse", "--verify", "--quiet", ref)
        if status == 0 and out.strip():
            return out.strip(), on
    return None


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


def earlier_check(transcript: Path, sha: str, digest: str) -> dict[str, Any] | None:
    """The check an earlier eval made of the same commit against the same tests, if any."""
    if not transcript.is_file():
        return None
    found = [e.data for e in read_events(transcript)
             if e.kind == "acceptance" and e.data.get("sha") == sha and e.data.get("acceptance_sha256") == digest]
    return found[-1] if found else None


def check_acceptance(
    run_dir: Path, run_id: str, settings: Settings, acceptance: Path, provider: SandboxProvider, transcript: Path
) -> dict[str, Any] | None:
    """The acceptance event's data for the run's release (or main, without one); None when the run has no main."""
    workspace = GitWorkspace(run_dir, settings.workspace)
    tested = tested_commit(workspace)
    if tested is None:
        return None
    sha, on = tested
    digest = folder_digest(acceptance)
    if (earlier := earlier_check(transcript, sha, digest)) is not None:
        return earlier
    log = TranscriptLog(transcript, run_id)
    roles = load_roles(settings.roles_dir or default_roles_dir(), known_tools=set(TOOL_NAMES))
    guard = TerritoryGuard(roles, workspace, log)
    sandboxes = RunSandboxes(provider, log, run_id)
    verdicts = Verdicts(settings, workspace, sandboxes, log, guard.is_test_file)
    canary = f"test_{secrets.token_hex(6)}"
    try:
        with tempfile.TemporaryDirectory(prefix="macrohard-acceptance-") as tmp:
            extra = Path(tmp) / "acceptance"
            shutil.copytree(acceptance, extra, symlinks=True)
            a, b = secrets.randbelow(10**6), secrets.randbelow(10**6) + 10**6
            (extra / f"{canary}.py").write_text(f"def {canary}():\n    assert {a} == {b}\n")
            report = verdicts.run(
                KEY, sha, ticket=None, extra=extra,
                exclude=lambda p: guard.is_test_file(p) or p in ACCEPTANCE_HIDES or p.split("/", 1)[0] == EXTRA_DIR,
            )
    finally:
        verdicts.close()
        sandboxes.close()
        provider.prune({"macrohard.run": run_id, "macrohard.ticket": KEY})
    return log.append("acceptance", on=on, acceptance_sha256=digest, **judged(report, canary, acceptance)).data

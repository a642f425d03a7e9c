"""Hidden acceptance tests on main, for a run that stopped before its own acceptance stage.

The same verdict as the run's release stage (company/release.py): main's tree exported
from git's objects without any test file or runner configuration a role wrote, the
acceptance folder copied in, the orchestrator's test command in a fresh read-only
sandbox, a machine-read report, and every acceptance test function required to pass
(none skipped, deselected or cut short). Its events go to a transcript of the eval's,
never into the run's own (whose chain ended with the run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.release import ACCEPTANCE_HIDES
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.territories import TerritoryGuard
from macrohard.company.verdict import EXTRA_DIR, Verdicts, missing_acceptance
from macrohard.config import Settings
from macrohard.roles import default_roles_dir, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace

KEY = "acceptance:eval"


def acceptance_on_main(
    run_dir: Path, run_id: str, settings: Settings, acceptance: Path, provider: SandboxProvider, transcript: Path
) -> dict[str, Any] | None:
    """The acceptance event's data for main's head (with `on: "main"`); None when the run has no main yet."""
    workspace = GitWorkspace(run_dir, settings.workspace)
    if not (workspace.repo_dir / ".git").is_dir():
        return None
    status, _ = workspace.query("rev-parse", "--verify", "--quiet", "main^{commit}")
    if status != 0:
        return None
    log = TranscriptLog(transcript, run_id)
    roles = load_roles(settings.roles_dir or default_roles_dir(), known_tools=set(TOOL_NAMES))
    guard = TerritoryGuard(roles, workspace, log)
    sandboxes = RunSandboxes(provider, log, run_id)
    verdicts = Verdicts(settings, workspace, sandboxes, log, guard.is_test_file)
    try:
        report = verdicts.run(
            KEY, workspace.head(), ticket=None, extra=acceptance,
            exclude=lambda p: guard.is_test_file(p) or p in ACCEPTANCE_HIDES or p.split("/", 1)[0] == EXTRA_DIR,
        )
    finally:
        verdicts.close()
        sandboxes.close()
        provider.prune({"macrohard.run": run_id, "macrohard.ticket": KEY})
    missing = missing_acceptance(acceptance, report.passed_ids)
    if report.passed and (missing or report.skipped):
        shown = ", ".join(missing[:10]) or f"{report.skipped} skipped"
        report = report.model_copy(update={"passed": False, "missing": missing,
                                           "reason": f"acceptance tests did not pass: {shown}"})
    event = log.append("acceptance", on="main", **report.model_dump(exclude={"output_tail", "ticket", "passed_ids"}))
    return event.data

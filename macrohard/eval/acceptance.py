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
import shutil
import tempfile
from pathlib import Path
from typing import Any

from macrohard.agent.tools import TOOL_NAMES
from macrohard.company.records import load_record
from macrohard.company.acceptance import ACCEPTANCE_HIDES, canary_name, judged, unsupported, write_canary
from macrohard.company.environment import ProductEnvironment
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.territories import TerritoryGuard
from macrohard.company.verdict import EXTRA_DIR, Verdicts
from macrohard.config import Settings
from macrohard.errors import MacrohardError
from macrohard.roles import default_roles_dir, load_roles
from macrohard.sandbox.base import SandboxProvider
from macrohard.transcript.log import TranscriptLog, read_events
from macrohard.workspace.git import GitWorkspace

KEY = "acceptance:eval"


def folder_digest(folder: Path) -> str:
    """What the acceptance tests are: a run checked against other tests is checked again."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def tested_commit(workspace: GitWorkspace) -> tuple[str, str] | None:
    """(sha, "release") for the commit the run released, else (sha, "main") for main's head; None without either."""
    if not (workspace.repo_dir / ".git").is_dir():
        return None
    try:
        release = load_record(workspace.run_dir).release or {}
    except (MacrohardError, ValueError, OSError):
        release = {}
    refs = [(f"{release['tag']}^{{commit}}", "release")] if release.get("tag") else []
    for ref, on in (*refs, ("main^{commit}", "main")):
        status, out = workspace.query("rev-parse", "--verify", "--quiet", ref)
        if status == 0 and out.strip():
            return out.strip(), on
    return None


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
    environment = ProductEnvironment(settings, provider, workspace, log)  # the run's stack, as it recorded it
    refused = unsupported(sha, environment.stack.name)
    if refused is not None:
        return log.append("acceptance", on=on, acceptance_sha256=digest, **refused).data
    verdicts = Verdicts(settings, workspace, sandboxes, log, guard.is_test_file, environment)
    canary = canary_name()
    try:
        with tempfile.TemporaryDirectory(prefix="macrohard-acceptance-") as tmp:
            extra = Path(tmp) / "acceptance"
            shutil.copytree(acceptance, extra, symlinks=True)
            write_canary(extra, canary)
            report = verdicts.run(
                KEY, sha, ticket=None, extra=extra,
                exclude=lambda p: guard.is_test_file(p) or p in ACCEPTANCE_HIDES or p.split("/", 1)[0] == EXTRA_DIR,
            )
    finally:
        verdicts.close()
        sandboxes.close()
        provider.prune({"macrohard.run": run_id, "macrohard.ticket": KEY})
    return log.append("acceptance", on=on, acceptance_sha256=digest, **judged(report, canary, acceptance)).data

"""Handing a run's result branch to the user: fetched into their repository, or written to a bundle.

Fetching only adds a branch to the user's repository: git refuses to fetch into the
branch they have checked out, and nothing touches their working tree, index or HEAD. A
branch of that name that already points elsewhere is left alone and the export refused.
"""

from __future__ import annotations

from pathlib import Path

from macrohard.errors import WorkspaceError
from macrohard.workspace.gitbase import run_git


def export_branch(run_repo: Path, branch: str, user_repo: Path) -> tuple[str, bool]:
    """Create `branch` in user_repo from the run's repository: (its sha, whether it was new)."""
    run_repo = run_repo.resolve()  # git runs in the user's repository: a relative path would point there
    sha = _branch_sha(run_repo, branch)
    if not user_repo.is_dir() or run_git(user_repo, "rev-parse", "--git-dir", check=False)[0] != 0:
        raise WorkspaceError(f"{user_repo} is not a git repository", "give the folder of the repository to export into")
    status, out, _ = run_git(user_repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    if status == 0:
        if out.strip() == sha:
            return sha, False
        raise WorkspaceError(f"{user_repo} already has a branch {branch} at {out.strip()[:12]}",
                             f"delete or rename it there, or export with --bundle (the run's branch is at {sha[:12]})")
    # From a folder: git's file transport, kept off elsewhere, is what this fetch is.
    run_git(user_repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-maintenance", "--",
            str(run_repo), f"refs/heads/{branch}:refs/heads/{branch}",
            env={"GIT_OPTIONAL_LOCKS": "0"}, config={"protocol.file.allow": "always"},
            hint="check that the repository can be written")
    return sha, True


def write_bundle(run_repo: Path, branch: str, base: str | None, bundle: Path) -> str:
    """Write the branch to a git bundle; only the commits after `base` when the bundle's user has it."""
    sha = _branch_sha(run_repo, branch)
    if bundle.exists():
        raise WorkspaceError(f"{bundle} already exists", "give a new file name")
    since = [f"^{base}"] if base and base != sha and _ancestor(run_repo, base, sha) else []
    run_git(run_repo, "bundle", "create", "--quiet", str(bundle.resolve()), f"refs/heads/{branch}", *since,
            hint="check that the bundle's folder can be written")
    return sha


def _branch_sha(run_repo: Path, branch: str) -> str:
    status, out, _ = run_git(run_repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    if status != 0:
        raise WorkspaceError(f"the run has no branch {branch}", "export a run that has ended (done, partial or failed)")
    return out.strip()


def _ancestor(repo: Path, older: str, newer: str) -> bool:
    return run_git(repo, "merge-base", "--is-ancestor", older, newer, check=False)[0] == 0

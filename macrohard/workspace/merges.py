"""Integration on the product repository: ticket branches into main, main into tickets.

A mixin of GitWorkspace (workspace/git.py). Merges of main run under the workspace's
lock; every merge carries provenance trailers, and a resumed merge finds the one an
earlier attempt made instead of merging twice.
"""

from __future__ import annotations

from macrohard.errors import WorkspaceError
from macrohard.workspace.gitbase import GitBase, _check_ticket_id, _summary
from macrohard.workspace.provenance import (
    EMAIL_DOMAIN,
    MACROHARD_NAME,
    MAIN,
    MergeResult,
    Provenance,
    compose_message,
    identity,
    role_identity,
)


class Merges(GitBase):
    def merge_ticket(self, ticket_id: str, prov: Provenance, title: str = "") -> MergeResult:
        """Merge ticket/<id> into main with --no-ff; on conflict abort and report the paths."""
        branch = f"ticket/{_check_ticket_id(ticket_id)}"
        with self._lock:
            self._require_main_checked_out()
            repo = self.repo_dir
            if self._merging(repo):
                # Left behind by a run killed mid-merge.
                self._run(repo, "merge", "--abort")
            ticket_head = self._rev(repo, f"refs/heads/{branch}")
            if ticket_head is None:
                raise WorkspaceError(f"branch {branch} does not exist", hint="create it with worktree() first")
            before = self.head(MAIN)
            if self._dirty(repo, untracked=False):
                raise WorkspaceError(
                    f"{MAIN}'s working tree in {repo} has uncommitted changes",
                    hint="commit them or reset_main() before merging",
                )
            subject = f"Merge {branch}: {title.strip()}" if title.strip() else f"Merge {branch} into {MAIN}"
            status, out, err = self._run(
                repo,
                "merge",
                "--no-stat",
                "--no-ff",
                "--no-edit",
                "--no-verify",
                "--cleanup=whitespace",
                "-m",
                compose_message(subject, prov),
                branch,
                env=role_identity(prov.role),
                check=False,
            )
            if status == 0:
                after = self.head(MAIN)
                if after != before:
                    return MergeResult(merged=True, sha=after, previous_sha=before)
                # "Already up to date": main contained the branch before this call.
                return self._earlier_merge(prov, ticket_id, before)
            conflicts = self._unmerged(repo)
            if self._merging(repo) or conflicts:
                self._run(repo, "merge", "--abort")
            if conflicts:
                return MergeResult(
                    merged=False, previous_sha=before, conflicts=conflicts, detail=(out + "\n" + err).strip()
                )
            raise WorkspaceError(
                f"git merge of {branch} failed: {_summary(err) or _summary(out)}",
                hint=f"inspect {repo}; main was left at {before[:12]}",
            )

    def _earlier_merge(self, prov: Provenance, ticket_id: str, main_sha: str) -> MergeResult:
        # A resumed integration runs under a new event: look for this run's merge of
        # this ticket too, so previous_sha is where main really was before it.
        earlier = self._find(self.repo_dir, MAIN, prov.run_id, prov.event_id) or self._find_merge(prov, ticket_id)
        if earlier is not None:
            first_parent = self._rev(self.repo_dir, f"{earlier}^1")
            return MergeResult(merged=True, sha=earlier, previous_sha=first_parent, detail="already merged")
        # Merged earlier under another event: nothing to do, and nothing new to report.
        detail = f"{MAIN} already contains ticket/{ticket_id}"
        return MergeResult(merged=True, sha=main_sha, previous_sha=main_sha, detail=detail)

    def find_merge(self, run_id: str, ticket_id: str, role: str) -> str | None:
        """The merge of ticket/<id> into main that `role` made in this run, if main still has it."""
        self._require_repo()
        return self._find_merge(Provenance(run_id=run_id, role=role, event_id="find"), _check_ticket_id(ticket_id))

    def reset_main(self, sha: str) -> None:
        """Move main and its working tree back to sha (after a merge turned main red)."""
        with self._lock:
            self._require_main_checked_out()
            target = self._rev(self.repo_dir, sha)
            if target is None:
                raise WorkspaceError(f"cannot reset {MAIN} to unknown commit {sha!r}", hint="pass a sha from this repo")
            if self._merging(self.repo_dir):
                self._run(self.repo_dir, "merge", "--abort")
            self._run(self.repo_dir, "reset", "--hard", "--quiet", target)

    def discard_uncommitted(self, ticket_id: str) -> None:
        """Drop what is not committed in a ticket's worktree: leftovers of its test runs."""
        cwd = self._scrubbed(self.worktree_path(ticket_id))
        self._run(cwd, "reset", "--hard", "--quiet")
        self._run(cwd, "clean", "-fd", "--quiet")

    def update_from_main(self, ticket_id: str) -> list[str]:
        """Merge main into the ticket branch; returns the conflicted paths, committed with their markers."""
        path = self.worktree_path(ticket_id)
        branch = f"ticket/{ticket_id}"
        cwd = self._scrubbed(path)
        if self._merging(cwd):
            # An earlier update never concluded (the run died while the engineer was
            # resolving it); start over against today's main.
            self._run(cwd, "merge", "--abort")
        if self._dirty(cwd):
            raise WorkspaceError(
                f"worktree {path} has uncommitted changes",
                hint="commit or discard them before updating the ticket from main",
            )
        # One snapshot of main: integration may move it while we merge.
        main_sha = self.head(MAIN)
        if self._ok(cwd, "merge-base", "--is-ancestor", main_sha, "HEAD"):
            return []
        status, out, err = self._run(
            cwd,
            "merge",
            "--ff",
            "--no-edit",
            "--no-verify",
            "--cleanup=whitespace",
            "-m",
            f"Merge {MAIN} into {branch}",
            main_sha,
            env=identity(MACROHARD_NAME, f"{MACROHARD_NAME}@{EMAIL_DOMAIN}"),
            check=False,
        )
        if status == 0:
            return []
        conflicts = self._unmerged(cwd)
        if conflicts:
            # Concluded with the markers in place: the role resolves them as an ordinary
            # change on top, so main's files are in HEAD and no territory check takes a
            # file the merge brought in for one the role made.
            self._run(cwd, "add", "--", *conflicts)
            self._run(
                cwd, "commit", "--quiet", "--no-verify", "--cleanup=whitespace",
                "-m", f"Merge {MAIN} into {branch} (conflicts left marked in: {', '.join(conflicts)})",
                env=identity(MACROHARD_NAME, f"{MACROHARD_NAME}@{EMAIL_DOMAIN}"),
            )
            return conflicts
        if self._merging(cwd):
            self._run(cwd, "merge", "--abort")
        raise WorkspaceError(
            f"git merge of {MAIN} into {branch} failed: {_summary(err) or _summary(out)}",
            hint=f"inspect the worktree {path}",
        )


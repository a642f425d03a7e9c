"""The product repository: the one module that talks to git.

A run keeps its product in ``workspaces/<run-id>/repo`` (branch ``main``) and gives
each ticket in progress a worktree in ``workspaces/<run-id>/worktrees/<T-n>`` on
branch ``ticket/<T-n>``. Every commit, merge and tag carries provenance trailers, and
every side effect first looks for the trailer an earlier attempt would have left, so
a resumed run neither loses nor duplicates a commit.

Pipelines of different tickets commit concurrently, each in its own worktree; what
touches shared metadata (worktree registration, main, tags) runs under one lock.

Every git process costs a few milliseconds, and a ticket's life (worktree, two
commits, merge, clean-up) is on the orchestrator's critical path. So branches and
HEAD are read from the ref files in-process (GitPython), and checks that git makes
anyway (nothing to commit, already merged, a stale worktree) are read from its
answer instead of asked for beforehand.

The parts: gitbase.py runs git safely, merges.py integrates, reading.py reads trees
and history; this module keeps the repository, its worktrees and commits.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from macrohard.errors import WorkspaceError
from macrohard.workspace.gitbase import (
    _REPO_CONFIG,
    GITIGNORE,
    GitBase,
    _split_z,
    _summary,
    _unlink_inside,
)
from macrohard.workspace.merges import Merges
from macrohard.workspace.reading import Reading
from macrohard.workspace.provenance import (
    ATTEMPT_TRAILER,
    EMAIL_DOMAIN,
    EVENT_TRAILER,
    MACROHARD_NAME,
    MAIN,
    ROLE_TRAILER,
    RUN_TRAILER,
    TICKET_TRAILER,
    CommitInfo,
    MergeResult,
    Provenance,
    compose_message,
    identity,
    parse_trailers,
    role_identity,
)

__all__ = [
    "ATTEMPT_TRAILER", "EVENT_TRAILER", "GITIGNORE", "MAIN", "ROLE_TRAILER", "RUN_TRAILER", "TICKET_TRAILER",
    "CommitInfo", "GitWorkspace", "MergeResult", "Provenance", "parse_trailers",
]

class GitWorkspace(Merges, Reading, GitBase):
    """The git side of one run: the product repo and one worktree per ticket."""

    # -- repository ------------------------------------------------------------

    def init(self) -> str:
        """Create the product repo on branch main with an initial commit; returns main's sha."""
        with self._lock:
            self.repo_dir.mkdir(parents=True, exist_ok=True)
            if not (self.repo_dir / ".git").exists():
                # Before the repo has its config, init itself must not run global hooks. Ref
                # files, not reftable, whatever the user's default: they are read in-process.
                self._run(
                    self.repo_dir, "init", f"--initial-branch={MAIN}", config=_REPO_CONFIG,
                    env={"GIT_DEFAULT_REF_FORMAT": "files"},
                )
            for key, value in _REPO_CONFIG.items():
                self._run(self.repo_dir, "config", "--local", key, value)
            existing = self._rev(self.repo_dir, MAIN)
            if existing is not None:
                return existing
            # Also reached when an earlier init died between `git init` and the commit.
            (self.repo_dir / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
            self._run(self.repo_dir, "add", "--", ".gitignore")
            self._run(
                self.repo_dir,
                "commit",
                "--no-verify",
                "--cleanup=whitespace",
                "-m",
                "Initialize repository",
                env=identity(MACROHARD_NAME, f"{MACROHARD_NAME}@{EMAIL_DOMAIN}"),
            )
            return self.head(MAIN)

    def head(self, ref: str = MAIN) -> str:
        """The commit sha ref points at."""
        self._require_repo()
        sha = self._rev(self.repo_dir, ref)
        if sha is None:
            raise WorkspaceError(f"unknown git ref {ref!r}", hint="check the branch, tag or sha")
        return sha

    # -- worktrees -------------------------------------------------------------

    def worktree(self, ticket_id: str, base: str = MAIN) -> Path:
        """The ticket's worktree on branch ticket/<id>, created from base if needed."""
        path = self.worktree_path(ticket_id)
        branch = f"ticket/{ticket_id}"
        with self._lock:
            self._require_repo()
            if self._is_worktree(path):
                return path
            self.worktrees_dir.mkdir(parents=True, exist_ok=True)
            hint = f"remove {path} if it is a leftover, then retry"
            status, out, err = self._run(self.repo_dir, *self._add_worktree(path, branch, base), check=False)
            if status != 0:
                if not (self.repo_dir / ".git" / "worktrees" / path.name).is_dir():
                    raise WorkspaceError(f"git worktree add failed: {_summary(err) or _summary(out)}", hint=hint)
                # Registered, but its folder was deleted by hand: forget it and add it again.
                self._run(self.repo_dir, "worktree", "prune")
                self._run(self.repo_dir, *self._add_worktree(path, branch, base), hint=hint)
            return path

    def worktrees(self, ticket_ids: list[str], base: str = MAIN) -> list[Path]:
        """Several tickets' worktrees, as worktree() makes each, their git processes side by side.

        A step of max_parallel 4 makes four, and one after another they held up its first
        model calls. Each `git worktree add` registers its own folder and branch (git locks
        a worktree while it is made); the lock keeps removals and main's changes out meanwhile.
        """
        with self._lock:
            self._require_repo()
            todo = [t for t in ticket_ids if not self._is_worktree(self.worktree_path(t))]
            if len(todo) > 1:
                self.worktrees_dir.mkdir(parents=True, exist_ok=True)
                commands = [self._add_worktree(self.worktree_path(t), f"ticket/{t}", base) for t in todo]
                with ThreadPoolExecutor(max_workers=len(commands), thread_name_prefix="worktree") as pool:
                    list(pool.map(lambda command: self._run(self.repo_dir, *command, check=False), commands))
            # What did not come out as a worktree goes the single way, with its recovery and its error.
            return [self.worktree(t, base) for t in ticket_ids]

    def _add_worktree(self, path: Path, branch: str, base: str) -> tuple[str, ...]:
        if self._rev(self.repo_dir, f"refs/heads/{branch}") is not None:
            # The branch outlived an earlier remove_worktree (or a failed add): check it out again.
            return ("worktree", "add", "--quiet", str(path), branch)
        if self._rev(self.repo_dir, base) is None:
            raise WorkspaceError(f"unknown base ref {base!r} for {branch}", hint="check the branch or sha")
        return ("worktree", "add", "--quiet", "-b", branch, str(path), base)

    def remove_worktree(self, ticket_id: str) -> None:
        """Delete the ticket's worktree, uncommitted changes included; the branch stays."""
        path = self.worktree_path(ticket_id)
        with self._lock:
            self._require_repo()
            if self._is_worktree(path):
                self._run(self.repo_dir, "worktree", "remove", "--force", str(path), hint=f"remove {path} by hand")
            else:
                self._run(self.repo_dir, "worktree", "prune")  # forget it if it was deleted by hand

    # -- commits ---------------------------------------------------------------

    def commit(self, path: Path, message: str, prov: Provenance) -> str | None:
        """Commit everything in path as prov.role; None when there is nothing to commit.

        Concludes a merge in progress. It does not look for an earlier commit of the
        same work: a step that may be running again asks find_work() first, before it
        redoes the work at all.
        """
        cwd = self._scrubbed(path)
        full_message = compose_message(message, prov)
        on_main = cwd == self.repo_dir.resolve()
        # Commits on main must not interleave with merges and resets of main.
        with self._lock if on_main else contextlib.nullcontext():
            self._run(cwd, "add", "-A")
            status, out, err = self._run(
                # --quiet: no summary, whose diffstat git would compute only to print it.
                cwd, "commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", full_message,
                env=role_identity(prov.role), check=False,
            )
            if status != 0:
                # Asked only when the commit did not happen: was there nothing to commit?
                if not self._merging(cwd) and self._ok(cwd, "diff", "--cached", "--quiet"):
                    return None
                raise WorkspaceError(
                    f"git commit failed in {cwd}: {_summary(err) or _summary(out) or f'exit status {status}'}",
                    hint=f"inspect the working tree {cwd}",
                )
            head = self._rev(cwd, "HEAD")
            assert head is not None  # a commit was just made on it
            return head

    def pending_changes(self, path: Path) -> list[str]:
        """Paths whose content in the tree differs from its HEAD: changed, added or deleted."""
        cwd = self._scrubbed(path)
        out = self._run(
            cwd, "status", "--porcelain", "-z", "--untracked-files=all", "--no-renames", "--ignore-submodules=all"
        )[1]
        return sorted({entry[3:] for entry in _split_z(out) if len(entry) > 3})

    def put_back(self, path: Path, paths: list[str]) -> None:
        """Return these paths of a tree to their HEAD state: restored if HEAD has them, deleted if not."""
        if not paths:
            return
        cwd = self._owned_dir(path)
        out = self._run(cwd, "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", *paths)[1]
        tracked = set(_split_z(out))
        for rel in paths:
            if rel not in tracked:
                _unlink_inside(cwd, rel)
        if tracked:
            # checkout replaces a link planted on the way with a folder; it never writes through one.
            self._run(cwd, "checkout", "--quiet", "--force", "HEAD", "--", *sorted(tracked))

    def branch(self, name: str, ref: str) -> None:
        """Point branch `name` at ref (made or moved): a result handed back, not a ticket's."""
        with self._lock:
            self._require_repo()
            if not self._ok(self.repo_dir, "check-ref-format", "--branch", name):
                raise WorkspaceError(f"invalid branch name {name!r}", hint="use letters, digits, / and -")
            self._run(self.repo_dir, "branch", "--force", "--no-track", name, self.head(ref))

    def tag(self, name: str, message: str, prov: Provenance, ref: str = MAIN) -> str:
        """Create annotated tag name at ref; returns the tagged commit's sha."""
        with self._lock:
            self._require_repo()
            if not self._ok(self.repo_dir, "check-ref-format", f"refs/tags/{name}"):
                raise WorkspaceError(f"invalid tag name {name!r}", hint="use something like v0.1.0")
            target = self.head(ref)
            existing = self._rev(self.repo_dir, f"refs/tags/{name}")
            if existing is not None:
                if existing == target:
                    return existing
                raise WorkspaceError(
                    f"tag {name} already exists at {existing[:12]}, not at {ref} ({target[:12]})",
                    hint="choose a new tag name",
                )
            self._run(
                self.repo_dir,
                "tag",
                "--annotate",
                "--cleanup=whitespace",
                "-m",
                compose_message(message, prov),
                name,
                target,
                env=role_identity(prov.role),
            )
            return target


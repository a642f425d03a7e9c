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
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import git as gitpython
from git.refs.symbolic import SymbolicReference

from macrohard.errors import WorkspaceError
from macrohard.models import TreeLimits
from macrohard.workspace.tree import open_folder, scrub
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
    role_identity,
    parse_trailers,
)

GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n"

# Repo-local settings that override anything in the user's global or system config
# that would change what a commit, merge or log looks like.
_REPO_CONFIG: dict[str, str] = {
    "user.name": MACROHARD_NAME,
    "user.email": f"{MACROHARD_NAME}@{EMAIL_DOMAIN}",
    "commit.gpgsign": "false",
    "tag.gpgsign": "false",
    # A user's global hooks (secret scanners, linters) must not veto or alter
    # commits made by the company; /dev/null holds no hooks.
    "core.hooksPath": os.devnull,
    "core.autocrlf": "false",
    # rerere could silently resolve a conflict the engineer is supposed to see.
    "rerere.enabled": "false",
    "merge.conflictStyle": "merge",
    "color.ui": "false",
    "log.showSignature": "false",
    # Background gc racing concurrent worktree commits buys nothing in small repos.
    "gc.auto": "0",
}

# Inherited from a parent git process (e.g. when run from a hook), these would point
# our commands at another repository or index and corrupt it.
_REDIRECTING_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_NAMESPACE",
)

_BASE_ENV: dict[str, str] = {
    # Only the repository's own config, which macrohard writes and no sandbox can: a
    # user's global or system config may define filters (git-lfs) or programs that a
    # planted .gitattributes would make git run on the sandbox's files.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_EDITOR": "true",
    "GIT_MERGE_AUTOEDIT": "no",
}

_NO_PROGRAMS: dict[str, str] = {
    "core.fsmonitor": "false",
    "core.hooksPath": "/dev/null",
    "core.sshCommand": "false",
    "diff.external": "",
    "core.pager": "cat",
    # A gitlink or .gitmodules must never make git descend into another repository.
    "submodule.recurse": "false",
    "diff.ignoreSubmodules": "all",
    "status.submoduleSummary": "false",
    "protocol.file.allow": "never",
    "core.untrackedCache": "false",
}

_TICKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def _summary(text: str) -> str:
    """Git's output on one line, with what it considers the error first."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return " / ".join(errors or lines)[:500]


def _split_z(output: str) -> list[str]:
    return [item for item in output.split("\0") if item]


class GitWorkspace:
    """The git side of one run: the product repo and one worktree per ticket."""

    def __init__(
        self,
        run_dir: Path,
        limits: TreeLimits | None = None,
        on_scrub: Callable[[Path, list[str]], None] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.limits = limits or TreeLimits()
        # Told which nested repositories were removed from a tree before git ran on it.
        self._on_scrub = on_scrub
        # Reentrant: locked operations call other locked helpers.
        self._lock = threading.RLock()
        self._repos: dict[str, gitpython.Repo] = {}

    @property
    def repo_dir(self) -> Path:
        return self.run_dir / "repo"

    @property
    def worktrees_dir(self) -> Path:
        return self.run_dir / "worktrees"

    def worktree_path(self, ticket_id: str) -> Path:
        return self.worktrees_dir / _check_ticket_id(ticket_id)

    # -- running git -----------------------------------------------------------

    def _run(
        self,
        cwd: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        hint: str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git <args>`` in cwd; (status, stdout, stderr). Raises WorkspaceError when check fails."""
        _refuse_redirecting_env()
        full_env = {**_BASE_ENV, **(env or {})}
        runner = gitpython.Git(str(cwd))
        # Settings that make git run a program, pinned on the command line (which wins
        # over any config file): a repository's config is not trusted to be ours alone.
        pinned = {**_NO_PROGRAMS, **(config or {})}
        overrides = [arg for key, value in pinned.items() for arg in ("-c", f"{key}={value}")]
        try:
            status, out, err = runner.execute(
                [runner.GIT_PYTHON_GIT_EXECUTABLE or "git", *overrides, *args],
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                env=full_env,
                # Out of the terminal's process group: a Ctrl-C that pauses the run
                # must not kill a commit or merge half way.
                start_new_session=True,
            )
        except gitpython.GitCommandNotFound as exc:
            raise WorkspaceError("git could not be run", hint="install git 2.39 or newer and put it on PATH") from exc
        except gitpython.GitError as exc:
            raise WorkspaceError(f"git {args[0]} failed: {_first_line(str(exc))}", hint=hint) from exc
        stdout = out.decode("utf-8", errors="replace") if isinstance(out, bytes) else str(out or "")
        stderr = err if isinstance(err, str) else (err or b"").decode("utf-8", errors="replace")
        if check and status != 0:
            detail = _summary(stderr) or _summary(stdout) or f"exit status {status}"
            raise WorkspaceError(f"git {args[0]} failed in {cwd}: {detail}", hint=hint)
        return status, stdout, stderr

    def _ok(self, cwd: Path, *args: str) -> bool:
        return self._run(cwd, *args, check=False)[0] == 0

    def _rev(self, cwd: Path, ref: str) -> str | None:
        branch = _branch_ref(ref)
        if branch is not None and not self._reftable():
            # A branch (or HEAD) always names a commit: read it from the ref files.
            _refuse_redirecting_env()
            try:
                return SymbolicReference.dereference_recursive(self._repo(cwd), branch)
            except ValueError:
                return None  # no such ref
            except (AssertionError, OSError):
                pass  # a ref file GitPython cannot read (an empty one after a power cut): ask git
        status, out, _ = self._run(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return out.strip() if status == 0 else None

    def _reftable(self) -> bool:
        # A repository made by git's newer ref storage has no ref files to read.
        return (self.repo_dir / ".git" / "reftable").is_dir()

    def _repo(self, cwd: Path) -> gitpython.Repo:
        # Only its ref reading is used: no git process, no object database.
        key = str(cwd)
        repo = self._repos.get(key)
        if repo is None:
            repo = self._repos[key] = gitpython.Repo(key)
        return repo

    def _merging(self, cwd: Path) -> bool:
        # A file check, not a git process: this runs before every commit and merge.
        git_dir = _git_dir(cwd)
        return git_dir is not None and (git_dir / "MERGE_HEAD").is_file()

    def _unmerged(self, cwd: Path) -> list[str]:
        out = self._run(cwd, "ls-files", "--unmerged", "-z")[1]
        return sorted({entry.split("\t", 1)[1] for entry in _split_z(out) if "\t" in entry})

    def _dirty(self, cwd: Path, *, untracked: bool = True) -> bool:
        mode = "--untracked-files=all" if untracked else "--untracked-files=no"
        return bool(self._run(cwd, "status", "--porcelain", "-z", mode)[1].strip("\0\n"))

    def _require_repo(self) -> None:
        if not (self.repo_dir / ".git").exists():
            raise WorkspaceError(f"no product repository at {self.repo_dir}", hint="call GitWorkspace.init() first")

    def _require_main_checked_out(self) -> None:
        self._require_repo()
        if self._reftable():
            branch = self._run(self.repo_dir, "symbolic-ref", "--quiet", "HEAD", check=False)[1].strip()
        else:
            head = (self.repo_dir / ".git" / "HEAD").read_text(errors="replace").strip()
            branch = head[len("ref: ") :] if head.startswith("ref: ") else ""
        if branch != f"refs/heads/{MAIN}":
            raise WorkspaceError(
                f"{self.repo_dir} has {branch or 'a detached HEAD'} checked out, not {MAIN}",
                hint=f"run `git checkout {MAIN}` in the product repository",
            )

    def _owned_dir(self, path: Path) -> Path:
        """The repo or one of its ticket worktrees; anything else is refused."""
        resolved = Path(path).resolve()
        if resolved == self.repo_dir.resolve() or resolved.parent == self.worktrees_dir.resolve():
            if (resolved / ".git").exists():
                return resolved
        raise WorkspaceError(
            f"{path} is not this run's repository or one of its ticket worktrees",
            hint=f"commit in {self.repo_dir} or a directory created by worktree()",
        )

    def _scrubbed(self, path: Path) -> Path:
        """An owned tree made safe for host git: nested repositories removed, size checked.

        Called before every git command that reads a working tree the sandbox could
        write. The caller makes sure nothing in a sandbox runs meanwhile (it pauses it).
        """
        cwd = self._owned_dir(path)
        removed = scrub(cwd, self.limits).removed
        if removed and self._on_scrub is not None:
            self._on_scrub(cwd, removed)
        return cwd

    def _is_worktree(self, path: Path) -> bool:
        """Whether path is a live worktree of this repo: its .git names one of our admin dirs."""
        git_dir = _git_dir(path) if (path / ".git").is_file() else None
        admin = (self.repo_dir / ".git" / "worktrees").resolve()
        return git_dir is not None and git_dir.resolve().parent == admin and git_dir.is_dir()

    def _find(self, cwd: Path, ref: str, run_id: str, event_id: str) -> str | None:
        # --grep narrows the walk; the exact match is on the parsed trailers. A ref
        # that does not exist yet (no commit) makes log fail: nothing found.
        status, out, _ = self._run(
            cwd, "log", ref, "-z", "--fixed-strings", f"--grep={EVENT_TRAILER}: {event_id}", "--format=%H%n%B",
            "--", check=False,
        )
        if status != 0:
            return None
        for record in _split_z(out):
            sha, _, message = record.partition("\n")
            trailers = parse_trailers(message)
            if trailers.get(RUN_TRAILER) == run_id and trailers.get(EVENT_TRAILER) == event_id:
                return sha.strip()
        return None

    def _find_merge(self, prov: Provenance, ticket_id: str) -> str | None:
        status, out, _ = self._run(
            self.repo_dir, "log", MAIN, "--merges", "-z", "--fixed-strings", f"--grep={TICKET_TRAILER}: {ticket_id}",
            "--format=%H%n%B", "--", check=False,
        )
        for record in _split_z(out) if status == 0 else []:
            sha, _, message = record.partition("\n")
            t = parse_trailers(message)
            if (t.get(RUN_TRAILER), t.get(ROLE_TRAILER), t.get(TICKET_TRAILER)) == (prov.run_id, prov.role, ticket_id):
                return sha.strip()
        return None

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

    def tree_files(self, ref: str) -> list[str]:
        """Every file path in ref's tree."""
        self._require_repo()
        return _split_z(self._run(self.repo_dir, "ls-tree", "-r", "-z", "--name-only", ref)[1])

    def merge_base(self, ticket_id: str) -> str:
        """Where the ticket branch and main last met: what the ticket's change is measured against."""
        branch = f"ticket/{_check_ticket_id(ticket_id)}"
        return self._run(self.repo_dir, "merge-base", MAIN, branch)[1].strip()

    def show(self, ref: str, path: str) -> bytes | None:
        """A file's content at ref; None when ref has no such file."""
        self._require_repo()
        runner = gitpython.Git(str(self.repo_dir))
        status, out, _ = runner.execute(
            [runner.GIT_PYTHON_GIT_EXECUTABLE or "git", "cat-file", "blob", f"{ref}:{path}"],
            with_extended_output=True, with_exceptions=False, stdout_as_string=False, env=_BASE_ENV,
            strip_newline_in_stdout=False,
        )
        return bytes(out) if status == 0 else None

    def export(self, ref: str, dest: Path, include: Callable[[str], bool] | None = None) -> int:
        """Write ref's tree into the empty or new folder dest, without filters; returns the file count.

        Object contents are read in-process, never through a working tree, so no
        attribute or filter of the product's can run anything. Gitlinks are left out.
        """
        self._require_repo()
        sha = self.head(ref) if _branch_ref(ref) else self._rev(self.repo_dir, ref)
        if sha is None:
            raise WorkspaceError(f"unknown git ref {ref!r}", hint="check the branch, tag or sha")
        dest.mkdir(parents=True, exist_ok=True)
        repo = gitpython.Repo(str(self.repo_dir))
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        count = 0
        try:
            for item in repo.commit(sha).tree.traverse():
                if item.type != "blob" or (include is not None and not include(item.path)):
                    continue
                # Folders are made and entered by descriptor, never through a link: a link
                # an earlier layer wrote (`tests -> /home/user`) must not carry a later
                # layer's file onto the host. A path through a link is left out.
                folder = open_folder(root, item.path.split("/")[:-1], create=True)
                if folder is None:
                    continue
                name = item.path.rsplit("/", 1)[-1]
                try:
                    data = item.data_stream.read()
                    if item.mode == 0o120000:
                        os.symlink(data.decode("utf-8", errors="surrogateescape"), name, dir_fd=folder)
                    else:
                        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o755 if item.mode & 0o111 else 0o644, dir_fd=folder)
                        with os.fdopen(fd, "wb") as f:
                            f.write(data)
                    count += 1
                except FileExistsError:
                    pass  # an earlier layer has this path (or a link there): the first one stands
                finally:
                    os.close(folder)
        finally:
            os.close(root)
            repo.close()
        return count

    def find_work(self, ref: str, run_id: str, role: str, ticket: str | None, attempt: int) -> str | None:
        """The commit on ref that `role` made for this ticket and attempt in this run, if any."""
        self._require_repo()
        status, out, _ = self._run(
            self.repo_dir, "log", ref, "-z", "--fixed-strings", f"--grep={ATTEMPT_TRAILER}: {attempt}",
            "--format=%H%n%B", "--", check=False,
        )
        if status != 0:
            return None
        for record in _split_z(out):
            sha, _, message = record.partition("\n")
            t = parse_trailers(message)
            if (t.get(RUN_TRAILER), t.get(ROLE_TRAILER), t.get(TICKET_TRAILER), t.get(ATTEMPT_TRAILER)) == (
                run_id, role, ticket, str(attempt)
            ):
                return sha.strip()
        return None

    def find_commit(self, ref: str, run_id: str, event_id: str) -> str | None:
        """The newest commit reachable from ref with these run and event trailers."""
        self._require_repo()
        return self._find(self.repo_dir, ref, run_id, event_id)

    def history(self, ref: str = MAIN, max_count: int | None = None) -> list[CommitInfo]:
        """Commits reachable from ref, newest first."""
        self._require_repo()
        if self._rev(self.repo_dir, ref) is None:
            raise WorkspaceError(f"unknown git ref {ref!r}", hint="check the branch, tag or sha")
        args = ["log", ref, "-z", "--format=%H%n%P%n%an%n%ae%n%B"]
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        commits: list[CommitInfo] = []
        for record in _split_z(self._run(self.repo_dir, *args)[1]):
            sha, parents, author, email, message = (record.split("\n", 4) + [""] * 5)[:5]
            commits.append(
                CommitInfo(
                    sha=sha.strip(),
                    author=author,
                    author_email=email,
                    subject=_first_line(message),
                    trailers=parse_trailers(message),
                    parents=len(parents.split()),
                )
            )
        return commits

    # -- integration -----------------------------------------------------------

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

    # -- releases and inspection -----------------------------------------------

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

    def query_capped(self, *args: str, limit: int) -> tuple[int, str, bool]:
        """A read-only git command whose output is read only up to limit bytes: (status, text, cut).

        Streamed from git and cut there, so a 100 MB line in a diff never sits in memory whole.
        """
        self._require_repo()
        _refuse_redirecting_env()
        overrides = [arg for key, value in _NO_PROGRAMS.items() for arg in ("-c", f"{key}={value}")]
        env = {**os.environ, **_BASE_ENV, "GIT_OPTIONAL_LOCKS": "0"}
        with subprocess.Popen(
            ["git", *overrides, *args], cwd=self.repo_dir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        ) as proc:
            assert proc.stdout is not None
            data = proc.stdout.read(limit + 1)
            cut = len(data) > limit
            if cut:
                proc.kill()
            proc.stdout.close()
            status = proc.wait()
        return (0 if cut else status), data[:limit].decode("utf-8", errors="replace"), cut

    def query(self, *args: str) -> tuple[int, str]:
        """Run a read-only git command (blame, log, show) in the product repository."""
        self._require_repo()
        # Readers (blame, the viewer) may run while the company writes: take no optional locks.
        status, out, _ = self._run(self.repo_dir, *args, check=False, env={"GIT_OPTIONAL_LOCKS": "0"})
        return status, out

    def files_between(self, old: str, new: str) -> list[str]:
        """Files that differ between two commits (what a merge brought into main)."""
        self._require_repo()
        if old == new:
            return []
        out = self._run(self.repo_dir, "diff", "--name-only", "-z", "--no-renames", old, new)[1]
        return sorted(set(_split_z(out)))

    def changed_files(self, ticket_id: str) -> list[str]:
        """Files the ticket branch changed since it forked from main (committed changes only)."""
        branch = f"ticket/{_check_ticket_id(ticket_id)}"
        self._require_repo()
        out = self._run(self.repo_dir, "diff", "--name-only", "-z", "--no-renames", f"{MAIN}...{branch}")[1]
        return sorted(set(_split_z(out)))

    def diff(self, ticket_id: str) -> str:
        """The ticket branch's committed changes against its merge-base with main."""
        branch = f"ticket/{_check_ticket_id(ticket_id)}"
        self._require_repo()
        return self._run(self.repo_dir, "diff", "--no-color", "--no-ext-diff", f"{MAIN}...{branch}")[1]


def _unlink_inside(root: Path, rel: str) -> None:
    """Delete the file rel below root, walking folders by descriptor without following links.

    A folder on the way that is gone, or is a link or not a folder, leaves nothing of rel to delete.
    """
    parts = rel.split("/")
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        folder = open_folder(top, parts[:-1])
    finally:
        os.close(top)
    if folder is None:
        return
    try:
        os.unlink(parts[-1], dir_fd=folder)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise WorkspaceError(f"cannot remove {rel} from {root}: {e.strerror}", hint="remove it by hand") from e
    finally:
        os.close(folder)


def _git_dir(cwd: Path) -> Path | None:
    """The git directory of a repository or worktree, found without running git."""
    dot = cwd / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    path = Path(text[len("gitdir:") :].strip())
    return path if path.is_absolute() else (cwd / path).resolve()


def _refuse_redirecting_env() -> None:
    leaked = [name for name in _REDIRECTING_ENV if os.environ.get(name)]
    if leaked:
        raise WorkspaceError(
            f"{', '.join(leaked)} is set in the environment and would point git at another repository",
            hint=f"unset {' '.join(leaked)} before running macrohard",
        )


def _branch_ref(ref: str) -> str | None:
    """The ref file behind HEAD, main or a full branch name; None for anything rev-parse must read."""
    if ref == "HEAD" or (ref.startswith("refs/heads/") and ".." not in ref):
        return ref
    return f"refs/heads/{MAIN}" if ref == MAIN else None


def _check_ticket_id(ticket_id: str) -> str:
    # The id becomes a directory and a branch name: keep it to one safe path segment.
    if not _TICKET_ID.match(ticket_id) or ".." in ticket_id or ticket_id.endswith(".lock"):
        raise WorkspaceError(f"invalid ticket id {ticket_id!r}", hint="use ids like T-1 (letters, digits, . _ -)")
    return ticket_id

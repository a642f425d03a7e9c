"""Running git for the product repository: its environment, pinned settings and checks.

The one place a git process is started. Git runs with only the repository's own
config (no global or system config or attributes: no filter or program from anywhere
else), with every setting that would make it run a program pinned off on the command
line, in its own session (a Ctrl-C that pauses the run must not kill a commit half
way). A working tree a sandbox could have written is scrubbed of nested repositories
before git reads it (see workspace/tree.py).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import git as gitpython
from git.refs.symbolic import SymbolicReference

from macrohard.errors import WorkspaceError
from macrohard.models import TreeLimits
from macrohard.workspace.tree import open_folder, scrub
from macrohard.workspace.provenance import (
    EVENT_TRAILER,
    MACROHARD_NAME,
    EMAIL_DOMAIN,
    MAIN,
    ROLE_TRAILER,
    RUN_TRAILER,
    TICKET_TRAILER,
    Provenance,
    parse_trailers,
)

# What a new product ignores: every stack's generated files (tests/test_stacks.py checks
# it holds each stack's lines; the stack is chosen after the repository is made).
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\nnode_modules/\nnpm-debug.log*\n"

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


def run_git(
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


class GitBase:
    """The run's repository paths and the git process runner the workspace's parts share."""

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
        # One object reader for the run's repository (see Reading._objects), shared by every thread.
        self._object_reader: gitpython.Repo | None = None
        self._object_lock = threading.Lock()

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
        return run_git(cwd, *args, env=env, check=check, hint=hint, config=config)

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

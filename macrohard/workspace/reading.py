"""Reading the product repository: trees, files, history and exports from git's objects.

A mixin of GitWorkspace (workspace/git.py). Nothing here writes a working tree; the
readers (blame, the viewer) run while the company writes, so they take no optional locks.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import git as gitpython
from git.objects import Commit

from macrohard.errors import WorkspaceError
from macrohard.workspace.gitbase import (
    _BASE_ENV,
    _NO_PROGRAMS,
    GitBase,
    _check_ticket_id,
    _first_line,
    _refuse_redirecting_env,
    _split_z,
)
from macrohard.workspace.tree import open_folder
from macrohard.workspace.provenance import (
    ATTEMPT_TRAILER,
    MAIN,
    ROLE_TRAILER,
    RUN_TRAILER,
    TICKET_TRAILER,
    CommitInfo,
    parse_trailers,
)


_FULL_SHA = re.compile(r"[0-9a-f]{40}")


class Reading(GitBase):
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
        with self._objects() as repo:
            commit = self._commit_object(repo, ref)
            if commit is None:
                return None
            try:
                item = commit.tree / path
            except KeyError:
                return None
            # A folder or a gitlink is no file (as `git cat-file blob ref:path` says too).
            return bytes(item.data_stream.read()) if item.type == "blob" else None

    def export(self, ref: str, dest: Path, include: Callable[[str], bool] | None = None) -> int:
        """Write ref's tree into the empty or new folder dest, without filters; returns the file count.

        Object contents are read in-process, never through a working tree, so no
        attribute or filter of the product's can run anything. Gitlinks are left out.
        """
        self._require_repo()
        with self._objects() as repo:
            commit = self._commit_object(repo, ref)
            if commit is None:
                raise WorkspaceError(f"unknown git ref {ref!r}", hint="check the branch, tag or sha")
            blobs = [(item.path, item.mode, item.binsha) for item in commit.tree.traverse()
                     if item.type == "blob" and (include is None or include(item.path))]
        dest.mkdir(parents=True, exist_ok=True)
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        count = 0
        try:
            for path, mode, binsha in blobs:
                # Folders are made and entered by descriptor, never through a link: a link
                # an earlier layer wrote (`tests -> /home/user`) must not carry a later
                # layer's file onto the host. A path through a link is left out.
                folder = open_folder(root, path.split("/")[:-1], create=True)
                if folder is None:
                    continue
                name = path.rsplit("/", 1)[-1]
                try:
                    with self._objects() as repo:  # one object at a time: other threads read between them
                        data = repo.odb.stream(binsha).read()
                    if mode == 0o120000:
                        os.symlink(data.decode("utf-8", errors="surrogateescape"), name, dir_fd=folder)
                    else:
                        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o755 if mode & 0o111 else 0o644, dir_fd=folder)
                        with os.fdopen(fd, "wb") as f:
                            f.write(data)
                    count += 1
                except FileExistsError:
                    pass  # an earlier layer has this path (or a link there): the first one stands
                finally:
                    os.close(folder)
        finally:
            os.close(root)
        return count

    @contextmanager
    def _objects(self) -> Iterator[gitpython.Repo]:
        """The run repository's object reader, for one thread at a time.

        Kept open for the run: a verdict exports two trees and reads a manifest or two,
        and a git process (or GitPython's two) per read is most of their cost. It reads
        objects by id (`git cat-file --batch`), never a working tree; objects written
        after it started are found too.
        """
        with self._object_lock:
            reader = self._object_reader
            if reader is not None and not _reading(reader):
                reader.close()  # its git died (killed): the next read starts another
                reader = None
            if reader is None:
                reader = self._object_reader = _object_reader(self.repo_dir)
            try:
                yield reader
            except BaseException:
                # A read cut short (an interrupt, no memory for a blob) leaves the rest of that
                # object in the pipe, which the next read would take for its own: start afresh.
                self._object_reader = None
                reader.close()
                raise

    def _commit_object(self, repo: gitpython.Repo, ref: str) -> Commit | None:
        """The commit ref names (a branch or a commit's full id read in-process), or None."""
        sha = ref if _FULL_SHA.fullmatch(ref) else self._rev(self.repo_dir, ref)
        if sha is None:
            return None
        try:
            kind = repo.odb.info(bytes.fromhex(sha)).type
        except ValueError:  # no such object
            return None
        if kind != b"commit":  # a tag's id, say: git peels it to its commit
            peeled = self._rev(self.repo_dir, sha)
            return None if peeled is None else repo.commit(peeled)
        return repo.commit(sha)

    def close(self) -> None:
        """End the object reader's git processes (the next read starts them again)."""
        with self._object_lock:
            reader, self._object_reader = self._object_reader, None
        if reader is not None:
            reader.close()

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


def _object_reader(repo_dir: Path) -> gitpython.Repo:
    """A Repo whose two persistent `git cat-file` processes are started here, not by GitPython:
    out of the terminal's process group (a Ctrl-C that pauses the run must not kill the reader
    that the rest of the step reads through, as for every git the run starts) and with only
    the repository's own config."""
    _refuse_redirecting_env()
    repo = gitpython.Repo(str(repo_dir))
    runner = repo.git
    for attr, flag in (("cat_file_header", "--batch-check"), ("cat_file_all", "--batch")):
        process = runner.execute(
            [runner.GIT_PYTHON_GIT_EXECUTABLE or "git", "cat-file", flag],
            as_process=True, istream=subprocess.PIPE, env=_BASE_ENV, start_new_session=True,
        )
        setattr(runner, attr, process)  # what GitPython's object database then reads through
    return repo


def _reading(repo: gitpython.Repo) -> bool:
    """Whether both of the reader's git processes still run."""
    runner = repo.git
    return all(p is not None and p.proc is not None and p.proc.poll() is None
               for p in (runner.cat_file_header, runner.cat_file_all))

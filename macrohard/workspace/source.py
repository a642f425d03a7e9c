"""Where a run's product starts when not from nothing: the user's repository, or an earlier run's.

The source is only read. It is checked first (a git repository with commits, the base
branch there, no submodules, within the size limits), so a bad one fails before
anything is made; then the run's own repository is cloned from the base's commit. Git
reads the source with no optional locks (it does not even refresh the index), and
uncommitted changes there are not part of the run: a warning says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import BaseModel

from macrohard.errors import WorkspaceError
from macrohard.models import TreeLimits
from macrohard.workspace.gitbase import _split_z, run_git
from macrohard.workspace.provenance import MAIN

# Reading the user's repository must not write to it (git status would refresh the index).
READ_ONLY = {"GIT_OPTIONAL_LOCKS": "0"}
# Cloning from a folder uses git's file transport, which the workspace keeps off otherwise
# (it is how a planted submodule would reach a host repository); here the source is the user's.
LOCAL_CLONE = {"protocol.file.allow": "always"}
GITLINK = "160000"


class RepoSource(BaseModel):
    """What a run starts from: a repository (a path or URL) and the branch to build on."""

    location: str
    base: str | None = None  # a branch; None: the repository's current branch (or HEAD's commit)
    kind: str = "repo"  # "repo": the user's; "run": an earlier run's product (`--from`)


class CheckedSource(BaseModel):
    """A source that passed the checks: what the run will build on."""

    source: RepoSource
    path: str  # the repository to clone from (the location, or a local mirror of a URL)
    base_name: str  # the branch, or the commit when HEAD is detached
    base_sha: str
    files: int
    bytes: int
    warnings: list[str] = []


def _git(cwd: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    return run_git(cwd, *args, env=READ_ONLY, check=check)


def check_source(source: RepoSource, limits: TreeLimits, scratch: Path) -> CheckedSource:
    """Check a source without changing it; a URL is first mirrored (bare) into `scratch`."""
    path = _local(source, scratch)
    where = source.location
    if _git(path, "rev-parse", "--git-dir", check=False)[0] != 0:
        raise WorkspaceError(f"{where} is not a git repository", "give the folder of a git repository (or its URL)")
    if _git(path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)[0] != 0 and source.base is None:
        raise WorkspaceError(f"{where} has no commits yet", "commit what the run should start from, then try again")
    base_name, base_sha = _base(path, source, where)
    warnings = []
    if _bare(path) is False and _dirty(path):
        warnings.append(f"{where} has uncommitted changes; the run starts from {base_name}'s last commit "
                        f"({base_sha[:12]}) without them")
    files, size = _tree(path, base_sha, where, limits)
    if _lfs(path, base_sha):
        warnings.append(f"{where} stores large files with Git LFS; the run sees their pointer files, not their content")
    return CheckedSource(source=source, path=str(path), base_name=base_name, base_sha=base_sha, files=files,
                         bytes=size, warnings=warnings)


def clone_source(checked: CheckedSource, repo_dir: Path) -> str:
    """Make the run's repository: a clone of the source with `main` at the base's commit; its sha."""
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    # No hard links into the source's objects, ref files whatever the user's default, and
    # no checkout yet: the branch the run works on is created at the base's commit.
    run_git(repo_dir.parent, "clone", "--quiet", "--no-hardlinks", "--no-checkout", "--", checked.path, str(repo_dir),
            env={"GIT_DEFAULT_REF_FORMAT": "files"}, config=LOCAL_CLONE)
    run_git(repo_dir, "checkout", "--quiet", "-B", MAIN, checked.base_sha)
    # The run never talks back to the source: `macrohard export` fetches from the run instead.
    run_git(repo_dir, "remote", "remove", "origin", check=False)
    for branch in _split_z(run_git(repo_dir, "for-each-ref", "--format=%(refname:short)%00", "refs/heads/")[1]):
        if branch.strip() and branch.strip() != MAIN:
            run_git(repo_dir, "branch", "--quiet", "-D", branch.strip())
    return checked.base_sha


def drop_mirror(checked: CheckedSource, scratch: Path) -> None:
    """Remove the local mirror of a URL source, if one was made."""
    path = Path(checked.path)
    if path.parent == scratch and path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _local(source: RepoSource, scratch: Path) -> Path:
    location = source.location.removeprefix("file://") if source.location.startswith("file://") else source.location
    path = Path(os.path.expanduser(location))
    if path.exists():
        if not path.is_dir():
            raise WorkspaceError(f"{source.location} is not a folder", "give the folder of a git repository")
        return path.resolve()
    if "://" not in source.location and not source.location.startswith("git@"):
        raise WorkspaceError(f"{source.location} does not exist", "give the folder of a git repository, or its URL")
    scratch.mkdir(parents=True, exist_ok=True)
    mirror = scratch / f"mirror-{os.getpid()}-{abs(hash(source.location)) % 10**8}.git"
    shutil.rmtree(mirror, ignore_errors=True)
    status, _, err = run_git(scratch, "clone", "--quiet", "--bare", "--", source.location, str(mirror), check=False,
                             config=LOCAL_CLONE)
    if status != 0:
        raise WorkspaceError(f"cannot clone {source.location}: {' '.join(err.split())[:300]}",
                             "check the URL and that it can be reached from here")
    return mirror


def _base(path: Path, source: RepoSource, where: str) -> tuple[str, str]:
    if source.base is not None:
        status, out, _ = _git(path, "rev-parse", "--verify", "--quiet", f"refs/heads/{source.base}^{{commit}}", check=False)
        if status != 0:
            branches = [b for b in _git(path, "for-each-ref", "--format=%(refname:short)", "refs/heads/")[1].split() if b]
            raise WorkspaceError(f"{where} has no branch {source.base!r}",
                                 f"its branches: {', '.join(branches[:10]) or 'none'}")
        return source.base, out.strip()
    sha = _git(path, "rev-parse", "--verify", "HEAD^{commit}")[1].strip()
    status, out, _ = _git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return (out.strip() if status == 0 else sha[:12]), sha


def _bare(path: Path) -> bool:
    return _git(path, "rev-parse", "--is-bare-repository")[1].strip() == "true"


def _dirty(path: Path) -> bool:
    out = _git(path, "--no-optional-locks", "status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=all")[1]
    return bool(out.strip())


def _tree(path: Path, sha: str, where: str, limits: TreeLimits) -> tuple[int, int]:
    """The base's file count and size, within the limits; no submodules."""
    files = size = 0
    gitlinks = []
    for entry in _split_z(_git(path, "ls-tree", "-r", "-l", "-z", sha)[1]):
        meta, _, name = entry.partition("\t")
        mode, _kind, _obj, length = meta.split()
        if mode == GITLINK:
            gitlinks.append(name)
            continue
        files += 1
        blob = int(length) if length.isdigit() else 0
        size += blob
        if blob > limits.max_file_bytes:
            raise WorkspaceError(f"{where}: {name} is {blob} bytes, over the limit of {limits.max_file_bytes}",
                                 "raise [workspace] max_file_bytes in macrohard.toml, or remove the file from the base")
    if gitlinks or any(name == ".gitmodules" for name in _split_z(_git(path, "ls-tree", "-z", "--name-only", sha)[1])):
        shown = ", ".join(gitlinks[:5]) or ".gitmodules"
        raise WorkspaceError(f"{where} uses git submodules ({shown}), which macrohard does not support",
                             "start from a repository without submodules")
    if files > limits.max_files:
        raise WorkspaceError(f"{where} has {files} files, over the limit of {limits.max_files}",
                             "raise [workspace] max_files in macrohard.toml")
    if size > limits.max_bytes:
        raise WorkspaceError(f"{where} holds {size} bytes, over the limit of {limits.max_bytes}",
                             "raise [workspace] max_bytes in macrohard.toml")
    return files, size


def _lfs(path: Path, sha: str) -> bool:
    status, out, _ = _git(path, "cat-file", "-p", f"{sha}:.gitattributes", check=False)
    return status == 0 and "filter=lfs" in out

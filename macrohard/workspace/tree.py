"""A worktree's files as the orchestrator sees them: walked without following links,
bounded in size, and scrubbed of anything that would make host git act.

Code in a sandbox can write anything below its worktree. Git on the host treats a
nested `.git` (a folder or a `gitdir:` file) as a repository of its own and runs
commands inside it with that repository's config (filters, fsmonitor), and treats
`.gitmodules` as submodule configuration. So before host git touches a worktree, every
`.git` below its root and a top-level `.gitmodules` are removed, and the tree's size is
checked against limits, so a role that filled it cannot make git read gigabytes.

The walk is iterative and goes by descriptor (never into a link), so neither a deep
tree nor a folder swapped for a link can make it fail or leave the root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from macrohard.errors import WorkspaceError
from macrohard.models import TreeLimits

# Git ignores these anyway; a listing or a size count should too.
NOT_PRODUCT = frozenset({".git", "__pycache__", ".pytest_cache"})
# Deeper than this is not a product, and each level of the walk holds a descriptor.
MAX_DEPTH = 64


class TreeTooLarge(WorkspaceError):
    """A worktree is over its limits: the role must delete what it does not need."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the root, '/'-separated
    folder: int  # an open descriptor of the folder holding it (valid during the walk)
    name: str
    mode: int


def walk(
    root: str | os.PathLike[str] | int, *, skip: frozenset[str] = NOT_PRODUCT, max_depth: int = MAX_DEPTH
) -> Iterator[Entry]:
    """Every entry below root (a path, or an open folder's descriptor, which stays open)
    but folders named in skip; sorted, each folder before its contents.

    An entry's `folder` descriptor is valid until the walk moves on. Folders deeper than
    max_depth raise TreeTooLarge. Links are reported, never followed. Two descriptors
    at most are open at a time, however wide or deep the tree: each folder is opened
    from the root again, one O_NOFOLLOW step at a time.
    """
    top = os.dup(root) if isinstance(root, int) else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[str, int]] = [("", 0)]
    try:
        while stack:
            prefix, depth = stack.pop()
            fd = _open_below(top, prefix)
            if fd is None:
                continue  # swapped for a link or removed since it was listed: not walked
            try:
                folders: list[tuple[str, int]] = []
                for name in sorted(os.listdir(fd)):
                    try:
                        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                    except FileNotFoundError:
                        continue  # gone since the listing
                    path = prefix + name
                    if stat.S_ISDIR(mode) and name in skip:
                        if name != ".git" or prefix:  # a nested .git is still reported
                            yield Entry(path, fd, name, mode)
                        continue
                    if stat.S_ISDIR(mode) and depth + 1 > max_depth:
                        raise TreeTooLarge(f"{path} is nested more than {max_depth} folders deep",
                                           hint="flatten the folder structure")
                    yield Entry(path, fd, name, mode)
                    if stat.S_ISDIR(mode):
                        folders.append((path + "/", depth + 1))
                stack.extend(reversed(folders))
            finally:
                os.close(fd)
    finally:
        os.close(top)


def _open_below(top: int, prefix: str) -> int | None:
    return open_folder(top, prefix.rstrip("/").split("/") if prefix else [])


def open_folder(top: int, parts: list[str], *, create: bool = False) -> int | None:
    """The folder at parts below the open folder top (made as needed with create), entered one
    O_NOFOLLOW step at a time; None when one of them is a link, missing, or not a folder."""
    fd = os.dup(top)
    for part in parts:
        if create:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
        try:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = inner
    return fd


class Scrubbed(BaseModel):
    removed: list[str]  # nested repositories and submodule files taken out
    files: int
    bytes: int


def scrub(root: str | os.PathLike[str], limits: TreeLimits) -> Scrubbed:
    """Remove what would make host git act on the tree, and check its size; before every host git command."""
    removed: list[str] = []
    files = total = 0
    for entry in walk(root, skip=frozenset({".git", "__pycache__", ".pytest_cache"})):
        if entry.name.lower() == ".git" and "/" in entry.path or (entry.path.lower() == ".gitmodules"):
            _remove(entry)
            removed.append(entry.path)
            continue
        if entry.path == ".git" or stat.S_ISDIR(entry.mode):
            continue
        files += 1
        size = os.stat(entry.name, dir_fd=entry.folder, follow_symlinks=False).st_size
        total += size
        if size > limits.max_file_bytes:
            raise TreeTooLarge(
                f"{entry.path} is {size} bytes, over the limit of {limits.max_file_bytes} per file",
                hint="delete it or keep it outside the product (for example under /tmp in the sandbox)",
            )
        if files > limits.max_files or total > limits.max_bytes:
            raise TreeTooLarge(
                f"the worktree holds more than {limits.max_files} files or {limits.max_bytes} bytes",
                hint="delete generated files, or keep them outside the product (under /tmp in the sandbox)",
            )
    return Scrubbed(removed=removed, files=files, bytes=total)


def empty_folder(path: str | os.PathLike[str]) -> None:
    """Delete everything in the folder at path but keep the folder (a sandbox may have it
    mounted): no link is followed, and no depth makes it fail."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _empty(fd)
    finally:
        os.close(fd)


def remove_folder(path: str | os.PathLike[str]) -> bool:
    """Delete the folder at path and everything in it, as empty_folder does; whether it is gone.

    For a folder a sandbox wrote (a verdict's report folder): what it holds may be deeper
    than a recursive removal can go, or moved while it is removed; then it stays, and the
    caller goes on (a leftover is only disk).
    """
    try:
        empty_folder(path)
        os.rmdir(path)
    except OSError:
        return False
    return True


def _remove(entry: Entry) -> None:
    if stat.S_ISDIR(entry.mode):
        fd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=entry.folder)
        try:
            _empty(fd)
        finally:
            os.close(fd)
        os.rmdir(entry.name, dir_fd=entry.folder)
    else:
        os.unlink(entry.name, dir_fd=entry.folder)


class FolderMoved(OSError):
    """A folder being emptied was moved meanwhile (by a process still writing there)."""


def _empty(fd: int) -> None:
    """Delete everything in an open folder, without following links or recursing.

    One descriptor at a time: a folder is left through `..`, which cannot be a link,
    so however deep a planted tree is, no descriptor limit or recursion limit is hit.
    But `..` is where the folder is now, not where it was entered from: a process still
    writing the tree can move the folder up while it is being emptied, and as many `..`
    as steps down would then climb above fd. So each `..` must be the very folder it
    was entered from (compared by device and inode), or the emptying stops.
    """
    current = os.dup(fd)
    names: list[str] = []  # the path from fd down to current
    above: list[tuple[int, int]] = []  # the identity of each folder on that path, fd's first
    try:
        while True:
            child = _clear_files(current)
            if child is not None:
                inner = os.open(child, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
                here = os.fstat(current)
                os.close(current)
                current, names = inner, [*names, child]
                above.append((here.st_dev, here.st_ino))
                continue
            if not names:
                return
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=current)
            there = os.fstat(parent)
            os.close(current)
            current = parent
            if (there.st_dev, there.st_ino) != above.pop():
                raise FolderMoved(f"{'/'.join(names)} was moved while it was being emptied")
            os.rmdir(names.pop(), dir_fd=current)
    finally:
        os.close(current)


def _clear_files(fd: int) -> str | None:
    """Unlink every non-folder in fd; the name of a subfolder still to empty, if any."""
    for name in os.listdir(fd):
        if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
            return name
        os.unlink(name, dir_fd=fd)
    return None

"""Paths a model names, confined to one root: nothing is followed out of it.

Checking a path and then using it is not enough (see `Confined`), so files are opened
one folder at a time, by descriptor, never through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from macrohard.agent.base import ToolError
from macrohard.workspace.tree import Entry, TreeTooLarge, walk


class Confined:
    """Resolves model-supplied paths inside one root; nothing may leave it.

    Checking a path and then using it is not enough: a process the model left running
    in the sandbox can swap a folder of the checked path for a link to a host folder
    in between. So files are opened from the root one folder at a time, by descriptor,
    never following a link, along the path as it was checked.
    """

    def __init__(self, root: Path, refuse_write: Callable[[str], str | None] | None = None) -> None:
        self.root = root.resolve()
        # Says why a path may not be written (outside the role's territory), or None.
        self.refuse_write = refuse_write

    def path(self, relative: str) -> Path:
        if not relative or "\x00" in relative:
            raise ToolError("a path is required")
        candidate = Path(relative)
        if candidate.is_absolute():
            # /workspace/x is how the sandbox sees the same file.
            parts = candidate.parts
            if parts[:2] != ("/", "workspace"):
                raise ToolError(f"{relative} is outside the workspace; use a path relative to it")
            candidate = Path(*parts[2:]) if len(parts) > 2 else Path(".")
        # resolve() follows symlinks, so a link pointing out of the root is refused too.
        try:
            resolved = (self.root / candidate).resolve()
        except (RuntimeError, OSError) as e:  # a symlink loop, a name too long
            raise ToolError(f"{relative} cannot be resolved: {e}") from e
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolError(f"{relative} leads outside the workspace; only files inside it can be used")
        if ".git" in resolved.relative_to(self.root).parts:
            raise ToolError("the .git folder is managed by macrohard and cannot be touched")
        return resolved

    def open(self, relative: str, *, write: bool = False, append: bool = False) -> tuple[int, str]:
        """A descriptor of the regular file at a checked path, and the path as shown to the model.

        For writing, the file and its missing folders are created and it is emptied, or,
        with append, kept and written at its end. The caller closes the descriptor.
        """
        write = write or append
        path = self.path(relative)
        parts = path.relative_to(self.root).parts
        if not parts:
            raise ToolError(f"{relative} is the workspace itself, not a file")
        if write and self.refuse_write is not None and (why := self.refuse_write("/".join(parts))):
            raise ToolError(why)
        folder = self._folder(relative, parts[:-1], create=write)
        try:
            return _open_regular(folder, parts[-1], relative, write=write, append=append), str(Path(*parts))
        finally:
            os.close(folder)

    def _folder(self, relative: str, parts: tuple[str, ...], *, create: bool) -> int:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = inner
        except FileNotFoundError:
            os.close(fd)
            raise ToolError(f"{relative} does not exist") from None
        except OSError as e:
            os.close(fd)
            raise _changed(relative, e) from e
        return fd

    def files(self, base: str = ".") -> Iterator[str]:
        """Every file under base (the root by default), relative to the root, in sorted order."""
        path = self.path(base)
        if not path.is_dir():
            raise ToolError(f"{base} is not a directory")
        start = path.relative_to(self.root).parts
        prefix = "/".join(start) + "/" if start else ""
        # By descriptor, never into a link, iteratively (a 1,500-deep tree is no error);
        # in a worktree .git is a file pointing at the repository: not the product's.
        folder = self._folder(base, start, create=False)
        try:
            for entry in walk(folder):
                if stat.S_ISDIR(entry.mode) or entry.name == ".git" or _links_to_folder(entry):
                    continue
                yield prefix + entry.path
        except TreeTooLarge:
            return
        finally:
            os.close(folder)


def _links_to_folder(entry: Entry) -> bool:
    # Listings show a link to a file as that file, and a link to a folder not at all.
    if not stat.S_ISLNK(entry.mode):
        return False
    try:
        return stat.S_ISDIR(os.stat(entry.name, dir_fd=entry.folder).st_mode)
    except OSError:
        return False


def _open_regular(folder: int, name: str, relative: str, *, write: bool, append: bool = False) -> int:
    """The regular file `name` in an open folder, opened without following a link.

    Anything else is refused unopened: a FIFO would hang, a device could do anything.
    """
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        if not write:
            raise ToolError(f"{relative} does not exist") from None
        mode = stat.S_IFREG  # to be created
    if stat.S_ISLNK(mode):
        raise _changed(relative, OSError(errno.ELOOP, "a link"))  # made a link since the path was checked
    if not stat.S_ISREG(mode):
        raise ToolError(f"{relative} is not a regular file")
    # What is swapped in between the stat and the open is caught by O_NOFOLLOW and the
    # fstat below; O_NONBLOCK and O_NOCTTY keep a FIFO or a terminal from doing harm meanwhile.
    flags = (os.O_WRONLY | os.O_CREAT if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY
    if append:
        flags |= os.O_APPEND
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
    except FileNotFoundError:
        raise ToolError(f"{relative} does not exist") from None
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENODEV, errno.EISDIR):  # a FIFO without a reader, a device, a folder
            raise ToolError(f"{relative} is not a regular file") from e
        raise _changed(relative, e) from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError(f"{relative} is not a regular file")
    if write and not append:
        os.ftruncate(fd, 0)  # only now, when it is known to be a regular file
    return fd


def _changed(relative: str, error: OSError) -> ToolError:
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        return ToolError(f"{relative} is or passes through a link or a non-folder; use the path it leads to")
    return ToolError(f"{relative} cannot be opened: {error.strerror}")

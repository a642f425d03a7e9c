"""Which user a sandbox runs as, and making sure that user can write its workdir.

A sandbox runs as the owner of its mounted workdir, so files written inside stay the
host user's. When that owner is root (macrohard itself running as root, as in CI),
the sandbox still must not be root: it runs as an unprivileged uid that is granted
read-write access through POSIX ACLs, default entries included, so files created
later on either side stay usable by both. Ownership is left alone, so git on the
host keeps trusting the repository.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from macrohard.errors import SandboxError
from macrohard.workspace.tree import TreeTooLarge, walk

# posix_acl_xattr format (linux/posix_acl_xattr.h): a version header, then entries of
# (tag, permissions, id) sorted by tag.
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_SKIP = {".git"}  # the sandbox may read the product, never rewrite its history


def _acl(mode: int, uid: int) -> bytes:
    entries = [
        (_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID),
        (_USER, 7, uid),
        (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
        (_MASK, 7, _UNDEFINED_ID),
        (_OTHER, mode & 7, _UNDEFINED_ID),
    ]
    return struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _grant(path: Path, uid: int, is_dir: bool) -> None:
    mode = path.stat().st_mode & 0o777
    os.setxattr(path, "system.posix_acl_access", _acl(mode, uid), follow_symlinks=False)
    if is_dir:
        os.setxattr(path, "system.posix_acl_default", _acl(mode, uid), follow_symlinks=False)


def grant_write(root: Path, uid: int) -> None:
    """Give `uid` read-write access to everything under `root` and to what is created later."""
    try:
        _grant(root, uid, True)
        # Iterative and by descriptor: a planted 1,500-deep tree is no RecursionError, a link is never followed.
        for entry in walk(root, skip=frozenset(_SKIP)):
            if not stat.S_ISLNK(entry.mode):
                _grant(Path(f"/proc/self/fd/{entry.folder}") / entry.name, uid, stat.S_ISDIR(entry.mode))
    except TreeTooLarge as e:
        raise SandboxError(f"cannot give the sandbox user access to {root}: {e.message}", e.hint) from e
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise SandboxError(
                f"cannot give the sandbox user access to {root}: its file system does not support POSIX ACLs",
                "run macrohard as a non-root user, or put workspaces on a file system with ACLs (ext4, xfs, btrfs)",
            ) from e
        raise SandboxError(f"cannot give the sandbox user access to {root}: {e.strerror}") from e


def sandbox_user(
    workdir: Path, unprivileged_uid: int, allow_root: bool = False, writable: tuple[Path, ...] | None = None
) -> str:
    """The `uid:gid` a sandbox on `workdir` runs as; root only when `allow_root` says so.

    `writable` names the folders that user must be able to write (the workdir by default).
    """
    owner = workdir.stat()
    if owner.st_uid != 0:
        return f"{owner.st_uid}:{owner.st_gid}"
    if allow_root:
        return "0:0"
    for folder in (workdir,) if writable is None else writable:
        grant_write(folder, unprivileged_uid)
    return f"{unprivileged_uid}:{unprivileged_uid}"

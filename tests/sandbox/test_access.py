import os
import struct

import pytest

from macrohard.sandbox.access import _acl, grant_write, sandbox_user


def test_acl_entries_are_sorted_and_carry_the_uid():
    blob = _acl(0o644, 4242)
    (version,) = struct.unpack_from("<I", blob)
    entries = [struct.unpack_from("<HHI", blob, 4 + 8 * i) for i in range((len(blob) - 4) // 8)]
    assert version == 2
    assert [e[0] for e in entries] == sorted(e[0] for e in entries)
    assert (0x02, 7, 4242) in entries and (0x01, 6, 0xFFFFFFFF) in entries and (0x20, 4, 0xFFFFFFFF) in entries


def test_a_non_root_owner_is_used_as_is(tmp_path):
    if os.geteuid() == 0:
        os.chown(tmp_path, 1234, 1234)
    st = tmp_path.stat()
    assert sandbox_user(tmp_path, 10001) == f"{st.st_uid}:{st.st_gid}"
    assert "system.posix_acl_access" not in os.listxattr(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="root-owned workdirs only happen when running as root")
def test_root_owned_trees_are_granted_but_git_and_links_are_not(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("c")
    os.symlink("/etc/hostname", tmp_path / "link")
    assert sandbox_user(tmp_path, 10001) == "10001:10001"
    for path in (tmp_path, tmp_path / "src", tmp_path / "src" / "a.py"):
        assert "system.posix_acl_access" in os.listxattr(path)
    assert "system.posix_acl_default" in os.listxattr(tmp_path / "src")
    assert "system.posix_acl_access" not in os.listxattr(tmp_path / ".git")
    assert "system.posix_acl_access" not in os.listxattr("/etc/hostname")
    grant_write(tmp_path, 10001)  # idempotent

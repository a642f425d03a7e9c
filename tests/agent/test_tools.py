import os

import pytest

from macrohard.agent.tools import AddTicket, Confined, EditFile, ListFiles, ReadFile, ToolError, WriteFile
from macrohard.models import Ticket


@pytest.fixture
def fs(tmp_path):
    root = tmp_path / "wt"
    root.mkdir()
    return Confined(root)


def test_write_read_list_edit_inside_the_root(fs):
    assert "wrote pkg/a.py" in WriteFile(fs).run(WriteFile.Args(path="pkg/a.py", content="x = 1\n"))
    assert ReadFile(fs).run(ReadFile.Args(path="pkg/a.py")) == "x = 1\n"
    assert ReadFile(fs).run(ReadFile.Args(path="/workspace/pkg/a.py")) == "x = 1\n"
    EditFile(fs).run(EditFile.Args(path="pkg/a.py", old="1", new="2"))
    assert (fs.root / "pkg/a.py").read_text() == "x = 2\n"
    assert ListFiles(fs).run(ListFiles.Args()) == "pkg/a.py"


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "pkg/../../x", ".git/config", ""])
def test_paths_that_leave_the_root_are_refused(fs, path):
    with pytest.raises(ToolError):
        WriteFile(fs).run(WriteFile.Args(path=path, content="x"))
    assert not (fs.root.parent / "outside.txt").exists()


def test_a_symlink_out_of_the_root_is_not_followed(fs, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("s3cret")
    os.symlink(secret, fs.root / "link.txt")
    os.symlink(tmp_path, fs.root / "dirlink")
    with pytest.raises(ToolError, match="outside"):
        ReadFile(fs).run(ReadFile.Args(path="link.txt"))
    with pytest.raises(ToolError, match="outside"):
        WriteFile(fs).run(WriteFile.Args(path="dirlink/new.txt", content="x"))
    assert secret.read_text() == "s3cret"


def test_edit_needs_exactly_one_match(fs):
    WriteFile(fs).run(WriteFile.Args(path="a.txt", content="aa"))
    with pytest.raises(ToolError, match="occurs 2 times"):
        EditFile(fs).run(EditFile.Args(path="a.txt", old="a", new="b"))
    with pytest.raises(ToolError, match="occurs 0 times"):
        EditFile(fs).run(EditFile.Args(path="a.txt", old="z", new="b"))


def test_add_ticket_numbers_tickets_and_checks_dependencies():
    planned: list[Ticket] = []
    tool = AddTicket(planned)
    tool.run(AddTicket.Args(title="a", description="d", acceptance_criteria=["c"]))
    tool.run(AddTicket.Args(title="b", description="d", acceptance_criteria=["c"], depends_on=["T-1"]))
    assert [(t.id, t.depends_on) for t in planned] == [("T-1", []), ("T-2", ["T-1"])]
    with pytest.raises(ToolError, match="T-9"):
        tool.run(AddTicket.Args(title="c", description="d", acceptance_criteria=["c"], depends_on=["T-9"]))
    assert len(planned) == 2


def test_loops_fifos_and_huge_files_are_refused_not_fatal(fs):
    os.symlink("loop", fs.root / "loop")
    with pytest.raises(ToolError, match="cannot be resolved"):
        ReadFile(fs).run(ReadFile.Args(path="loop"))
    os.mkfifo(fs.root / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        WriteFile(fs).run(WriteFile.Args(path="pipe", content="x"))  # would block forever
    with pytest.raises(ToolError, match="not a regular file"):
        ReadFile(fs).run(ReadFile.Args(path="pipe"))
    with (fs.root / "huge.bin").open("wb") as f:
        f.truncate(50 * 2**30)  # sparse: 50 GiB that take no disk
    shown = ReadFile(fs).run(ReadFile.Args(path="huge.bin"))
    assert len(shown) < 200_000 and "more bytes" in shown
    with pytest.raises(ToolError, match="larger than"):
        EditFile(fs).run(EditFile.Args(path="huge.bin", old="a", new="b"))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_is_refused(fs):
    import stat

    os.mknod(fs.root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for tool, args in ((ReadFile, {"path": "null"}), (WriteFile, {"path": "null", "content": "x"})):
        with pytest.raises(ToolError, match="not a regular file"):
            tool(fs).run(tool.Args(**args))


def test_a_link_inside_the_root_still_leads_to_its_file(fs):
    (fs.root / "sub").mkdir()
    (fs.root / "sub" / "real.txt").write_text("real\n")
    os.symlink("sub/real.txt", fs.root / "alias.txt")
    os.symlink("sub", fs.root / "subalias")
    assert ReadFile(fs).run(ReadFile.Args(path="alias.txt")) == "real\n"
    WriteFile(fs).run(WriteFile.Args(path="subalias/new.txt", content="n\n"))
    assert (fs.root / "sub" / "new.txt").read_text() == "n\n"
    assert sorted(ListFiles(fs).run(ListFiles.Args()).splitlines()) == ["alias.txt", "sub/new.txt", "sub/real.txt"]


@pytest.fixture
def swapped_after_check(fs, tmp_path, monkeypatch):
    """The worst timing: folder d becomes a link to a host folder right after the path check."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret\n")
    (fs.root / "d").mkdir()
    (fs.root / "d" / "secret.txt").write_text("mine\n")
    real_path = Confined.path

    def check_then_swap(self, relative):
        checked = real_path(self, relative)
        if not (fs.root / "d").is_symlink():
            for f in (fs.root / "d").iterdir():
                f.unlink()
            (fs.root / "d").rmdir()
            os.symlink(outside, fs.root / "d")
        return checked

    monkeypatch.setattr(Confined, "path", check_then_swap)
    return outside


@pytest.mark.parametrize("tool, args", [
    (WriteFile, {"path": "d/planted.txt", "content": "x"}),
    (WriteFile, {"path": "d/secret.txt", "content": "x"}),
    (ReadFile, {"path": "d/secret.txt"}),
    (EditFile, {"path": "d/secret.txt", "old": "secret", "new": "owned"}),
    (ListFiles, {"path": "d"}),
])
def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(fs, swapped_after_check, tool, args):
    with pytest.raises(ToolError, match="link"):
        tool(fs).run(tool.Args(**args))
    assert sorted(p.name for p in swapped_after_check.iterdir()) == ["secret.txt"]
    assert (swapped_after_check / "secret.txt").read_text() == "host secret\n"


def test_a_process_racing_the_tools_with_links_never_gets_a_file_out(fs, tmp_path):
    import subprocess
    import sys
    import time

    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret\n")
    flipper = (  # what a process left running in the sandbox could do, as fast as it can
        "import os, shutil, sys\n"
        "d = os.path.join(sys.argv[1], 'd')\n"
        "while True:\n"
        "    try:\n"
        "        if os.path.islink(d): os.unlink(d); os.mkdir(d)\n"
        "        else: shutil.rmtree(d, ignore_errors=True); os.symlink(sys.argv[2], d)\n"
        "    except OSError: pass\n"
    )
    race = subprocess.Popen([sys.executable, "-c", flipper, str(fs.root), str(outside)])
    leaked = 0
    try:
        deadline = time.monotonic() + 1.5  # unguarded, writes got out every few hundred tries
        while time.monotonic() < deadline:
            for tool, args in ((WriteFile, {"path": "d/planted.txt", "content": "x"}), (ReadFile, {"path": "d/secret.txt"})):
                try:
                    leaked += "host secret" in tool(fs).run(tool.Args(**args))
                except (ToolError, OSError):  # as the agent loop reports them to the model
                    pass
    finally:
        race.kill()
        race.wait()
    assert not (outside / "planted.txt").exists() and leaked == 0

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

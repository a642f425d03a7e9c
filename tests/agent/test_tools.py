import os

import pytest

from macrohard.agent.tools import (
    MAX_READ_CHARS, MAX_WRITE_BYTES, AddTicket, Confined, DescribeProduct, EditFile, ListFiles, ReadFile, ToolError,
    WriteFile,
)
from macrohard.models import RunSpec, Ticket


@pytest.fixture
def fs(tmp_path):
    root = tmp_path / "wt"
    root.mkdir()
    return Confined(root)


def test_write_read_list_edit_inside_the_root(fs):
    assert "wrote pkg/a.py" in WriteFile(fs).run(WriteFile.Args(path="pkg/a.py", content="x = 1\n"))
    assert ReadFile(fs).run(ReadFile.Args(path="pkg/a.py")) == "[pkg/a.py: 1 line]\nx = 1"
    assert ReadFile(fs).run(ReadFile.Args(path="/workspace/pkg/a.py")) == "[pkg/a.py: 1 line]\nx = 1"
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


def test_describe_product_records_how_the_product_runs_and_the_last_call_stands():
    described: list[RunSpec] = []
    tool = DescribeProduct(described)
    said = tool.run(DescribeProduct.Args(kind="cli", command=" python3 -m tool README.md ", port=80))
    assert "python3 -m tool README.md" in said and "exit 0" in said
    assert described == [RunSpec(kind="cli", command="python3 -m tool README.md")]  # a cli has no port
    tool.run(DescribeProduct.Args(kind="service", command="python3 -m svc", port=8000, health_path="/health"))
    assert described == [RunSpec(kind="service", command="python3 -m svc", port=8000, health_path="/health")]
    tool.run(DescribeProduct.Args(kind="library", command=""))
    assert described[0].kind == "library" and described[0].command == "" and not described[0].default


@pytest.mark.parametrize("args, says", [
    ({"kind": "cli", "command": "  "}, "a cli needs its command"),
    ({"kind": "service", "command": ""}, "a service needs its command"),
    ({"kind": "service", "command": "python3 -m svc"}, "needs the port"),
    ({"kind": "service", "command": "python3 -m svc", "port": 8000, "health_path": "health"}, "starting with /"),
    ({"kind": "cli", "command": "echo a\nrm -rf /"}, "one line"),
])
def test_describe_product_refuses_what_the_release_could_not_check(args, says):
    described: list[RunSpec] = []
    with pytest.raises(ToolError, match=says):
        DescribeProduct(described).run(DescribeProduct.Args(**args))
    assert described == []


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
    assert len(shown) < 12_000 and "line 1 of at least 1 (the file is 53687091200 bytes" in shown
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
    assert ReadFile(fs).run(ReadFile.Args(path="alias.txt")) == "[sub/real.txt: 1 line]\nreal"
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
    (WriteFile, {"path": "d/secret.txt", "content": "x", "append": True}),
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


def numbered(n: int, width: int = 60) -> str:
    return "".join(f"line {i:04d} ".ljust(width, "y") + "\n" for i in range(1, n + 1))


def test_read_file_says_how_many_lines_and_reads_a_range(fs):
    (fs.root / "m.py").write_text(numbered(1000))
    read = ReadFile(fs)
    part = read.run(ReadFile.Args(path="m.py", start=500, end=502))
    assert part.splitlines() == ["[m.py: lines 500-502 of 1000]"] + numbered(502).splitlines()[499:]
    assert read.run(ReadFile.Args(path="m.py", start=1000)).splitlines()[0] == "[m.py: line 1000 of 1000]"
    (fs.root / "e.txt").write_text("")
    assert read.run(ReadFile.Args(path="e.txt")) == "[e.txt: empty]"
    with pytest.raises(ToolError, match="m.py has 1000 lines; start=1001 is past its end"):
        read.run(ReadFile.Args(path="m.py", start=1001))
    with pytest.raises(ToolError, match="before start"):
        read.run(ReadFile.Args(path="m.py", start=5, end=4))


def test_a_big_file_is_shown_a_part_at_a_time_and_every_line_can_be_reached(fs):
    text = numbered(1000)
    (fs.root / "m.py").write_text(text)
    read, seen, start = ReadFile(fs), [], 1
    for _ in range(20):
        shown = read.run(ReadFile.Args(path="m.py", start=start))
        assert len(shown) <= MAX_READ_CHARS + 200
        lines = shown.splitlines()
        first, last = (int(x) for x in lines[0].split("lines ")[1].split(" of")[0].split("-"))
        assert first == start and lines[0].endswith("of 1000]")
        seen += lines[1 : 1 + last - first + 1]
        if "to read on" not in lines[-1]:
            break
        assert lines[-1] == f"[lines {last + 1}-1000 not shown; call read_file with start={last + 1} to read on]"
        start = last + 1
    assert seen == text.splitlines()  # the middle of a large module is no longer out of sight


def test_a_line_longer_than_a_read_is_cut_and_the_next_is_reachable(fs):
    (fs.root / "min.js").write_text("z" * (3 * MAX_READ_CHARS) + "\nshort\n")
    shown = ReadFile(fs).run(ReadFile.Args(path="min.js"))
    assert shown.startswith("[min.js: line 1 of 2]\n" + "z" * MAX_READ_CHARS + "\n")
    assert "only its start is shown" in shown and "start=2 to read on" in shown
    assert ReadFile(fs).run(ReadFile.Args(path="min.js", start=2)) == "[min.js: line 2 of 2]\nshort"


def test_write_file_appends_parts_within_the_cap(fs):
    write = WriteFile(fs)
    assert write.run(WriteFile.Args(path="p/big.py", content="A = 1\n", append=True)) == "appended 6 bytes to p/big.py (now 6 bytes)"
    write.run(WriteFile.Args(path="p/big.py", content="B = 2\n", append=True))
    assert (fs.root / "p/big.py").read_text() == "A = 1\nB = 2\n"
    write.run(WriteFile.Args(path="p/big.py", content="C = 3\n"))  # without append: replaced
    assert (fs.root / "p/big.py").read_text() == "C = 3\n"
    (fs.root / "full.txt").write_text("x" * MAX_WRITE_BYTES)
    with pytest.raises(ToolError, match="would grow"):
        write.run(WriteFile.Args(path="full.txt", content="more", append=True))
    assert (fs.root / "full.txt").stat().st_size == MAX_WRITE_BYTES


def test_appending_is_confined_like_writing(fs, tmp_path):
    outside = tmp_path / "host.txt"
    outside.write_text("host\n")
    os.symlink(outside, fs.root / "link.txt")
    with pytest.raises(ToolError, match="outside"):
        WriteFile(fs).run(WriteFile.Args(path="link.txt", content="planted", append=True))
    refusing = Confined(fs.root, refuse_write=lambda path: "tests are the tester's" if path.startswith("tests/") else None)
    with pytest.raises(ToolError, match="tester's"):
        WriteFile(refusing).run(WriteFile.Args(path="tests/test_x.py", content="x", append=True))
    assert outside.read_text() == "host\n" and not (fs.root / "tests").exists()

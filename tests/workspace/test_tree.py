"""The orchestrator's walk of a tree a sandbox wrote: no link followed, no recursion,
bounded, and every nested repository removed before host git runs."""

import os
import shutil
import sys
import threading

import pytest

from macrohard.models import TreeLimits
from macrohard.workspace.tree import TreeTooLarge, remove_folder, scrub, walk


def deep(root, name: str, levels: int) -> None:
    fd = os.open(root, os.O_RDONLY)
    os.mkdir(name, dir_fd=fd)
    for part in [name] + ["d"] * levels:
        inner = os.open(part, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
        if part == "d" or part == name:
            try:
                os.mkdir("d", dir_fd=fd)
            except FileExistsError:
                pass
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
        f.write("x")
    os.close(fd)


def test_nested_repositories_and_gitmodules_are_removed_however_deep(tmp_path):
    (tmp_path / ".git").mkdir()  # the tree's own: kept
    (tmp_path / "app.py").write_text("x = 1\n")
    (tmp_path / "vendor" / "helper").mkdir(parents=True)
    deep(tmp_path / "vendor" / "helper", ".git", 1500)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".git").write_text("gitdir: /elsewhere\n")
    (tmp_path / ".gitmodules").write_text("[submodule]\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # no recursion may depend on the depth
    try:
        result = scrub(tmp_path, TreeLimits())
    finally:
        sys.setrecursionlimit(limit)
    assert sorted(result.removed) == [".gitmodules", "sub/.git", "vendor/helper/.git"]
    assert (tmp_path / ".git").is_dir() and not (tmp_path / "vendor" / "helper" / ".git").exists()
    assert result.files == 1


def test_walks_never_follow_links_and_a_deep_tree_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    assert [e.path for e in walk(root)] == ["link"]
    deep(root, "deep", 100)
    with pytest.raises(TreeTooLarge, match="nested more than 64"):
        list(walk(root))


def test_limits_on_files_bytes_and_one_file(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i}").write_text("x" * 10)
    with pytest.raises(TreeTooLarge, match="more than 20 files"):
        scrub(tmp_path, TreeLimits(max_files=20))
    with pytest.raises(TreeTooLarge, match="more than .* or 100 bytes"):
        scrub(tmp_path, TreeLimits(max_bytes=100))
    (tmp_path / "big").write_bytes(b"x" * 5000)
    with pytest.raises(TreeTooLarge, match="big is 5000 bytes"):
        scrub(tmp_path, TreeLimits(max_file_bytes=4096))


def test_a_wide_tree_keeps_few_descriptors_open(tmp_path):
    for i in range(3000):
        (tmp_path / f"d{i}").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    peak = 0
    for _ in walk(tmp_path):
        peak = max(peak, len(os.listdir("/proc/self/fd")) - before)
    assert peak <= 4


def test_emptying_a_folder_never_leaves_it_when_a_folder_is_moved_up_meanwhile(tmp_path):
    # A verdict's report folder is the sandbox's to write while the host empties it. The
    # sandbox builds run/verdicts/v-1/output/<v-1>/<output>/X (named after the host's own path,
    # which /proc/self/mountinfo shows it) and, once the host is inside X, moves X up to the
    # root: climbing by `..` as many levels as it went down would take the host out of the
    # folder, emptying (as root) whatever lies above it.
    from macrohard.workspace.tree import empty_folder

    verdicts = tmp_path / "run" / "verdicts"
    output = verdicts / "v-1" / "output"
    x = output / "v-1" / "output" / "X"
    x.mkdir(parents=True)
    (verdicts / "main-abc.json").write_text("[]")
    (tmp_path / "run" / "transcript.jsonl").write_text("{}\n")
    for i in range(20000):
        (x / f"f{i:05d}").touch()
    first = os.listdir(x)[0]  # the host lists X in the same order: it unlinks this one first
    moved = threading.Event()
    did: list[bool] = []

    def race() -> None:
        while not moved.is_set():
            if not (x / first).exists():
                os.rename(x, output / "X")
                did.append(True)
                moved.set()

    racer = threading.Thread(target=race, daemon=True)
    racer.start()
    try:
        empty_folder(output)
    except OSError:
        pass  # refusing to go on is fine; going on above the folder is not
    finally:
        moved.set()
        racer.join()
    assert did  # the move happened while the host was inside X
    assert (verdicts / "main-abc.json").exists() and (tmp_path / "run" / "transcript.jsonl").exists()
    assert output.is_dir()


def test_a_folder_deeper_than_the_recursion_limit_is_removed(tmp_path):
    top = tmp_path / "report"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(sys.getrecursionlimit() + 200):
        os.mkdir("a", dir_fd=fd)
        inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    with pytest.raises(RecursionError):
        shutil.rmtree(top)  # what verdicts used: it cannot remove this
    assert remove_folder(top) and not top.exists()

"""Versions come from the repository's tags, so a later run on the same product releases the next one."""

import subprocess
from pathlib import Path

import pytest

from macrohard.deploy.versions import MAX_CHANGES, latest, next_version, parse, release_base
from macrohard.workspace.git import GitWorkspace


def test_release_tags_parse_and_others_are_ignored():
    assert parse("v1.20.3") == (1, 20, 3)
    assert [parse(t) for t in ("1.2.3", "v1.2", "v01.2.3", "v1.2.3-rc1", "release")] == [None] * 5


@pytest.mark.parametrize("tags, expected", [
    ([], "v0.1.0"),
    (["v0.1.0"], "v0.2.0"),
    (["v0.9.0", "v0.10.0", "v0.2.7"], "v0.11.0"),  # numbers, not text, decide
    (["v1.4.2", "nightly", "v2.0.0-beta"], "v1.5.0"),
])
def test_the_next_version_bumps_the_minor_of_the_highest_tag(tags, expected):
    assert next_version(tags) == expected
    assert latest([]) is None


def commit(ws: GitWorkspace, name: str, message: str) -> None:
    (ws.repo_dir / name).write_text(message)
    for args in (["add", name], ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", message]):
        subprocess.run(["git", *args], cwd=ws.repo_dir, check=True)


def test_release_base_reads_the_repository_tags_and_the_commits_since_the_previous_release(tmp_path: Path):
    ws = GitWorkspace(tmp_path)
    ws.init()
    first = release_base(ws, "main")
    assert (first.version, first.previous, first.changes) == ("v0.1.0", None, ["Initialize repository"])

    commit(ws, "a.py", "Add a")
    subprocess.run(["git", "tag", "-a", "-m", "Release v0.1.0", "v0.1.0"], cwd=ws.repo_dir, check=True)
    commit(ws, "b.py", "Add b")
    commit(ws, "c.py", "Add c")
    second = release_base(ws, "main")
    assert (second.version, second.previous, second.changes) == ("v0.2.0", "v0.1.0", ["Add c", "Add b"])

    # Once this run made its tag, it names the same version and the same previous one (a resumed run).
    subprocess.run(["git", "tag", "-a", "-m", "Release v0.2.0", "v0.2.0"], cwd=ws.repo_dir, check=True)
    again = release_base(ws, "main", "v0.2.0")
    assert (again.version, again.previous, again.changes) == ("v0.2.0", "v0.1.0", ["Add c", "Add b"])
    assert release_base(ws, "main").version == "v0.3.0"


def test_the_changes_handed_on_are_bounded(tmp_path: Path):
    ws = GitWorkspace(tmp_path)
    ws.init()
    for n in range(MAX_CHANGES + 5):
        commit(ws, "f.txt", f"Change {n}")
    base = release_base(ws, "main")
    assert len(base.changes) == MAX_CHANGES and base.more_changes == 6 and base.changes[0] == f"Change {MAX_CHANGES + 4}"

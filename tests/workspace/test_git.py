"""GitWorkspace against real git repositories in tmp_path."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from macrohard.errors import WorkspaceError
from macrohard.workspace.git import (
    GITIGNORE,
    GitWorkspace,
    Provenance,
    parse_trailers,
)

RUN = "run-1"


def prov(event: str, role: str = "engineer", ticket: str | None = "T-1") -> Provenance:
    return Provenance(run_id=RUN, role=role, ticket=ticket, event_id=event)


def git(cwd: Path, *args: str) -> str:
    """Independent check through the git CLI, not through the code under test."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(autouse=True)
def hostile_global_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A global config that signs commits, runs a failing hook and sets no identity."""
    home = tmp_path_factory.mktemp("home")
    hooks = home / "hooks"
    # reference-transaction cannot be skipped with --no-verify: only hooksPath helps.
    for hook in ("pre-commit", "commit-msg", "pre-merge-commit", "reference-transaction"):
        write(hooks / hook, "#!/bin/sh\nexit 1\n")
        (hooks / hook).chmod(0o755)
    config = home / "gitconfig"
    write(
        config,
        "[commit]\n\tgpgsign = true\n[tag]\n\tgpgsign = true\n"
        f"[core]\n\thooksPath = {hooks}\n[init]\n\tdefaultBranch = trunk\n"
        "[merge]\n\tff = only\n[color]\n\tui = always\n[rerere]\n\tenabled = true\n",
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def ws(tmp_path: Path) -> GitWorkspace:
    workspace = GitWorkspace(tmp_path / "run-1")
    workspace.init()
    return workspace


def test_provenance_renders_trailers_exactly() -> None:
    assert prov("ev-9").trailers() == (
        "Macrohard-Run: run-1\nMacrohard-Role: engineer\nMacrohard-Ticket: T-1\nMacrohard-Event: ev-9"
    )
    assert prov("ev-9", role="deployer", ticket=None).trailers() == (
        "Macrohard-Run: run-1\nMacrohard-Role: deployer\nMacrohard-Event: ev-9"
    )
    with pytest.raises(ValueError):
        Provenance(run_id=RUN, role="engineer", ticket=None, event_id="ev\nMacrohard-Run: forged")


def test_parse_trailers_ignores_subject_and_prose() -> None:
    assert parse_trailers("Fix: a bug") == {}
    assert parse_trailers("Subject\n\nsome prose: here\nand more") == {}
    assert parse_trailers("Subject\n\nbody\n\nA-B: 1\nC: two words\n") == {"A-B": "1", "C": "two words"}


def test_init_is_idempotent_and_independent_of_global_config(tmp_path: Path) -> None:
    workspace = GitWorkspace(tmp_path / "run-1")
    sha = workspace.init()
    assert workspace.init() == sha
    repo = workspace.repo_dir
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert (repo / ".gitignore").read_text() == GITIGNORE
    assert git(repo, "config", "--local", "commit.gpgsign") == "false"
    assert git(repo, "log", "--format=%an <%ae>|%cn", "main") == "macrohard <macrohard@macrohard.invalid>|macrohard"
    assert len(workspace.history()) == 1
    assert workspace.head() == sha


def test_worktree_per_ticket_on_its_own_branch(ws: GitWorkspace) -> None:
    one = ws.worktree("T-1")
    two = ws.worktree("T-2")
    assert one == ws.worktrees_dir / "T-1" and two == ws.worktrees_dir / "T-2"
    assert git(one, "rev-parse", "--abbrev-ref", "HEAD") == "ticket/T-1"
    assert git(two, "rev-parse", "--abbrev-ref", "HEAD") == "ticket/T-2"
    assert ws.worktree("T-1") == one  # idempotent

    write(one / "a.txt", "a\n")
    sha = ws.commit(one, "Add a", prov("e1"))
    ws.remove_worktree("T-1")
    assert not one.exists()
    assert ws.head("ticket/T-1") == sha  # the branch survives

    again = ws.worktree("T-1")  # re-attaches the existing branch
    assert (again / "a.txt").read_text() == "a\n"
    ws.remove_worktree("T-1")
    ws.remove_worktree("T-1")  # no-op the second time


def test_invalid_ticket_id_is_refused(ws: GitWorkspace) -> None:
    for bad in ("../escape", "T 1", "", "a..b", "x.lock"):
        with pytest.raises(WorkspaceError):
            ws.worktree(bad)


def test_commit_authored_by_role_with_trailers(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    write(wt / "app.py", "print('hi')\n")
    sha = ws.commit(wt, "Add app\n\nFirst version.", prov("ev-1"))
    assert sha == git(wt, "rev-parse", "HEAD")
    assert git(wt, "log", "-1", "--format=%an|%ae|%cn|%ce") == (
        "engineer|engineer@macrohard.invalid|engineer|engineer@macrohard.invalid"
    )

    latest = ws.history("ticket/T-1")[0]
    assert latest.sha == sha
    assert latest.author == "engineer"
    assert latest.subject == "Add app"
    assert latest.parents == 1
    assert latest.trailers == {
        "Macrohard-Run": RUN,
        "Macrohard-Role": "engineer",
        "Macrohard-Ticket": "T-1",
        "Macrohard-Event": "ev-1",
    }
    assert Provenance.from_trailers(latest.trailers) == prov("ev-1")
    assert ws.find_commit("ticket/T-1", RUN, "ev-1") == sha
    assert ws.find_commit("ticket/T-1", RUN, "ev-") is None
    assert ws.find_commit("ticket/T-1", "other-run", "ev-1") is None
    assert ws.find_commit("main", RUN, "ev-1") is None


def test_commit_with_nothing_to_commit_returns_none(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    before = ws.head("ticket/T-1")
    assert ws.commit(wt, "Nothing", prov("ev-1")) is None
    write(wt / "__pycache__" / "x.pyc", "ignored")
    assert ws.commit(wt, "Still nothing", prov("ev-2")) is None
    assert ws.head("ticket/T-1") == before


def test_commit_outside_the_run_is_refused(ws: GitWorkspace, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError):
        ws.commit(tmp_path, "x", prov("ev-1"))


def _ticket(ws: GitWorkspace, ticket: str, files: dict[str, str], event: str) -> str:
    wt = ws.worktree(ticket)
    for name, text in files.items():
        write(wt / name, text)
    sha = ws.commit(wt, f"Work on {ticket}", prov(event, ticket=ticket))
    assert sha is not None
    return sha


def test_tickets_touching_different_files_merge_no_ff(ws: GitWorkspace) -> None:
    start = ws.head()
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    _ticket(ws, "T-2", {"two.py": "TWO = 2\n"}, "e2")
    assert ws.changed_files("T-1") == ["one.py"]
    assert "+ONE = 1" in ws.diff("T-1")

    first = ws.merge_ticket("T-1", prov("m1", role="integrator"), title="first ticket")
    assert first.merged and first.previous_sha == start and not first.conflicts
    second = ws.merge_ticket("T-2", prov("m2", role="integrator", ticket="T-2"))
    assert second.merged and second.previous_sha == first.sha and second.sha == ws.head()

    merges = [c for c in ws.history() if c.parents == 2]
    assert [m.sha for m in merges] == [second.sha, first.sha]
    assert merges[1].subject == "Merge ticket/T-1: first ticket"
    assert merges[0].author == "integrator"
    assert merges[0].trailers["Macrohard-Event"] == "m2"
    assert sorted(git(ws.repo_dir, "ls-files").split()) == [".gitignore", "one.py", "two.py"]

    # A resumed integration must not merge twice.
    count = len(ws.history())
    again = ws.merge_ticket("T-2", prov("m2", role="integrator", ticket="T-2"))
    assert again.merged and again.sha == second.sha and again.previous_sha == first.sha
    assert len(ws.history()) == count


def test_conflict_aborts_then_update_from_main_resolve_and_merge(ws: GitWorkspace) -> None:
    write(ws.repo_dir / "app.py", "value = 0\n")
    base = ws.commit(ws.repo_dir, "Seed app", prov("seed", role="architect", ticket=None))
    assert base is not None
    _ticket(ws, "T-1", {"app.py": "value = 1\n"}, "e1")
    _ticket(ws, "T-2", {"app.py": "value = 2\n"}, "e2")
    assert ws.merge_ticket("T-1", prov("m1", role="integrator")).merged
    main_before = ws.head()

    result = ws.merge_ticket("T-2", prov("m2", role="integrator", ticket="T-2"))
    assert not result.merged
    assert result.conflicts == ["app.py"]
    assert "app.py" in result.detail
    assert ws.head() == main_before
    assert git(ws.repo_dir, "status", "--porcelain") == ""
    assert not (ws.repo_dir / ".git" / "MERGE_HEAD").exists()
    assert (ws.repo_dir / "app.py").read_text() == "value = 1\n"

    wt = ws.worktree("T-2")
    assert ws.update_from_main("T-2") == ["app.py"]
    text = (wt / "app.py").read_text()
    assert "<<<<<<<" in text and ">>>>>>>" in text
    write(wt / "app.py", "value = 1 + 2\n")
    resolved = ws.commit(wt, "Resolve conflict with main", prov("e3", ticket="T-2"))
    assert resolved is not None
    # The merge was concluded with its markers (by macrohard); the resolution is the engineer's, on top.
    info, merge = ws.history("ticket/T-2")[:2]
    assert info.sha == resolved and info.parents == 1 and info.author == "engineer"
    assert merge.parents == 2 and merge.author == "macrohard" and "conflicts left marked in: app.py" in merge.subject

    merged = ws.merge_ticket("T-2", prov("m3", role="integrator", ticket="T-2"))
    assert merged.merged and merged.previous_sha == main_before
    assert (ws.repo_dir / "app.py").read_text() == "value = 1 + 2\n"


def test_a_conflicted_update_is_committed_with_its_markers_so_a_role_resolves_on_top(ws: GitWorkspace) -> None:
    write(ws.repo_dir / "app.py", "value = 0\n")
    assert ws.commit(ws.repo_dir, "Seed app", prov("seed", role="architect", ticket=None))
    _ticket(ws, "T-1", {"app.py": "value = 1\n", "tests/test_one.py": "def test_one():\n    pass\n"}, "e1")
    ticket_head = _ticket(ws, "T-2", {"app.py": "value = 2\n"}, "e2")
    assert ws.merge_ticket("T-1", prov("m1", role="integrator")).merged
    wt = ws.worktree("T-2")
    assert ws.update_from_main("T-2") == ["app.py"]
    # No merge is left open, and what main brought (T-1's test) is in HEAD, not a pending change of the role's.
    assert not (ws.repo_dir / ".git" / "worktrees" / "T-2" / "MERGE_HEAD").exists()
    assert ws.pending_changes(wt) == []
    assert "tests/test_one.py" in ws.tree_files("ticket/T-2")
    # Keeping the ticket's side is an ordinary commit on top of the merge.
    write(wt / "app.py", "value = 2\n")
    sha = ws.commit(wt, "Keep ours", prov("e3", ticket="T-2"))
    assert sha is not None and sha != ticket_head
    assert ws.history("ticket/T-2")[1].parents == 2
    assert ws.merge_ticket("T-2", prov("m2", role="integrator", ticket="T-2")).merged

def test_update_from_main_clean_merge_is_committed_by_macrohard(ws: GitWorkspace) -> None:
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    _ticket(ws, "T-2", {"two.py": "TWO = 2\n"}, "e2")
    assert ws.merge_ticket("T-1", prov("m1", role="integrator")).merged
    assert ws.update_from_main("T-2") == []
    top = ws.history("ticket/T-2")[0]
    assert top.parents == 2 and top.author == "macrohard"
    assert (ws.worktrees_dir / "T-2" / "one.py").exists()
    assert ws.update_from_main("T-2") == []  # already up to date: no new commit
    assert ws.history("ticket/T-2")[0].sha == top.sha


def test_update_from_main_refuses_a_dirty_worktree(ws: GitWorkspace) -> None:
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    wt = ws.worktree("T-2")
    assert ws.merge_ticket("T-1", prov("m1", role="integrator")).merged
    write(wt / "scratch.py", "x = 1\n")
    with pytest.raises(WorkspaceError):
        ws.update_from_main("T-2")


def test_reset_main(ws: GitWorkspace) -> None:
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    result = ws.merge_ticket("T-1", prov("m1", role="integrator"))
    assert (ws.repo_dir / "one.py").exists()
    assert result.previous_sha is not None
    ws.reset_main(result.previous_sha)
    assert ws.head() == result.previous_sha
    assert not (ws.repo_dir / "one.py").exists()
    assert git(ws.repo_dir, "status", "--porcelain") == ""
    with pytest.raises(WorkspaceError):
        ws.reset_main("0" * 40)


def test_tag_is_idempotent(ws: GitWorkspace) -> None:
    target = ws.head()
    p = prov("t1", role="deployer", ticket=None)
    assert ws.tag("v0.1.0", "Release 0.1.0", p) == target
    assert ws.tag("v0.1.0", "Release 0.1.0", p) == target
    assert git(ws.repo_dir, "cat-file", "-t", "v0.1.0") == "tag"
    body = git(ws.repo_dir, "cat-file", "-p", "v0.1.0")
    assert "tagger deployer <deployer@macrohard.invalid>" in body
    assert body.endswith(p.trailers())

    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    assert ws.merge_ticket("T-1", prov("m1", role="integrator")).merged
    with pytest.raises(WorkspaceError):
        ws.tag("v0.1.0", "Release 0.1.0", p)


def test_git_errors_become_workspace_errors(ws: GitWorkspace, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        ws.head("no-such-branch")
    assert "\n" not in info.value.message and info.value.hint
    with pytest.raises(WorkspaceError):
        ws.merge_ticket("T-9", prov("m", role="integrator", ticket="T-9"))
    with pytest.raises(WorkspaceError):
        GitWorkspace(tmp_path / "missing").worktree("T-1")


def test_redirecting_git_environment_is_refused(ws: GitWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_INDEX_FILE", "/somewhere/else/index")
    with pytest.raises(WorkspaceError, match="GIT_INDEX_FILE"):
        ws.head()


def test_concurrent_commits_in_two_worktrees(ws: GitWorkspace) -> None:
    tickets = ["T-1", "T-2", "T-3"]
    rounds = 4
    barrier = threading.Barrier(len(tickets))
    errors: list[BaseException] = []

    def work(ticket: str) -> None:
        try:
            barrier.wait()
            wt = ws.worktree(ticket)
            for n in range(rounds):
                write(wt / f"{ticket}-{n}.txt", f"{n}\n")
                assert ws.commit(wt, f"{ticket} step {n}", prov(f"{ticket}-e{n}", ticket=ticket)) is not None
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    for ticket in tickets:
        history = ws.history(f"ticket/{ticket}")
        assert [c.subject for c in history[:rounds]] == [f"{ticket} step {n}" for n in reversed(range(rounds))]
        assert ws.changed_files(ticket) == sorted(f"{ticket}-{n}.txt" for n in range(rounds))


def test_find_work_finds_a_roles_commit_for_one_attempt(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    write(wt / "a.py", "x = 1\n")
    first = Provenance(run_id="run-1", role="engineer", ticket="T-1", event_id="ev-000001", attempt=1)
    sha = ws.commit(wt, "T-1: a (attempt 1)", first)
    assert Provenance.from_trailers(ws.history("ticket/T-1")[0].trailers) == first
    assert ws.find_work("ticket/T-1", "run-1", "engineer", "T-1", 1) == sha
    assert ws.find_work("ticket/T-1", "run-1", "engineer", "T-1", 2) is None
    assert ws.find_work("ticket/T-1", "run-1", "tester", "T-1", 1) is None
    assert ws.find_work("ticket/T-1", "run-2", "engineer", "T-1", 1) is None


def test_a_resumed_merge_under_a_new_event_finds_the_real_merge(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    write(wt / "a.py", "x = 1\n")
    ws.commit(wt, "T-1: a", prov("ev-1"))
    before = ws.head()
    first = ws.merge_ticket("T-1", prov("ev-2", role="orchestrator"))
    again = ws.merge_ticket("T-1", prov("ev-9", role="orchestrator"))  # the node ran again after a crash
    assert again.merged and again.sha == first.sha and again.previous_sha == before
    assert ws.files_between(again.previous_sha, again.sha) == ["a.py"]


def test_leftovers_of_a_test_run_do_not_block_bringing_main_in(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    write(wt / "a.py", "x = 1\n")
    ws.commit(wt, "T-1: a", prov("ev-1"))
    write(ws.repo_dir / "b.py", "y = 2\n")
    ws.commit(ws.repo_dir, "main moves on", prov("ev-2", role="product_manager", ticket=None))
    write(wt / "out.txt", "written by a test\n")
    write(wt / "a.py", "x = 'changed by a test'\n")
    with pytest.raises(WorkspaceError):
        ws.update_from_main("T-1")
    ws.discard_uncommitted("T-1")
    assert ws.update_from_main("T-1") == []
    assert (wt / "b.py").exists() and not (wt / "out.txt").exists() and (wt / "a.py").read_text() == "x = 1\n"


def test_a_worktree_deleted_by_hand_is_made_again(ws: GitWorkspace) -> None:
    import shutil

    wt = ws.worktree("T-1")
    write(wt / "a.py", "x = 1\n")
    sha = ws.commit(wt, "T-1: a", prov("ev-1"))
    shutil.rmtree(wt)  # git still has it registered
    again = ws.worktree("T-1")
    assert (again / "a.py").read_text() == "x = 1\n" and ws.head("ticket/T-1") == sha
    assert git(again, "rev-parse", "--abbrev-ref", "HEAD") == "ticket/T-1"
    shutil.rmtree(again)
    ws.remove_worktree("T-1")
    assert str(again) not in git(ws.repo_dir, "worktree", "list")


def test_a_leftover_folder_in_a_worktrees_place_is_refused_with_a_hint(ws: GitWorkspace) -> None:
    write(ws.worktree_path("T-1") / "stray.txt", "not a worktree\n")
    with pytest.raises(WorkspaceError, match="T-1' already exists") as refused:
        ws.worktree("T-1")
    assert "if it is a leftover" in str(refused.value.hint)
    (ws.worktree_path("T-1") / "stray.txt").unlink()
    ws.worktree_path("T-1").rmdir()
    assert git(ws.worktree("T-1"), "rev-parse", "--abbrev-ref", "HEAD") == "ticket/T-1"  # removed, it works


def test_refs_read_in_process_agree_with_git(ws: GitWorkspace) -> None:
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    git(ws.repo_dir, "pack-refs", "--all")  # refs in packed-refs, not loose files
    assert ws.head() == git(ws.repo_dir, "rev-parse", "main")
    assert ws.head("refs/heads/ticket/T-1") == git(ws.repo_dir, "rev-parse", "ticket/T-1")
    with pytest.raises(WorkspaceError, match="unknown git ref"):
        ws.head("refs/heads/ticket/T-9")
    git(ws.repo_dir, "checkout", "-q", "--detach")
    with pytest.raises(WorkspaceError, match="a detached HEAD checked out, not main"):
        ws.merge_ticket("T-1", prov("m1", role="orchestrator"))


def test_a_ticket_with_nothing_new_merges_as_already_contained(ws: GitWorkspace) -> None:
    ws.worktree("T-1")  # a branch at main, never committed to
    before = ws.head()
    result = ws.merge_ticket("T-1", prov("m1", role="orchestrator"))
    assert result.merged and result.sha == result.previous_sha == before and "already contains" in result.detail
    assert ws.head() == before


def test_a_users_reftable_default_still_gives_ref_files(
    tmp_path: Path, hostile_global_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile_global_config.open("a") as f:
        f.write("[init]\n\tdefaultRefFormat = reftable\n")
    monkeypatch.setenv("GIT_DEFAULT_REF_FORMAT", "reftable")
    ws = GitWorkspace(tmp_path / "run")
    sha = ws.init()
    assert git(ws.repo_dir, "rev-parse", "--show-ref-format") == "files"
    assert ws.head() == sha


def test_refs_that_cannot_be_read_in_process_are_asked_of_git(tmp_path: Path) -> None:
    made = tmp_path / "run" / "repo"
    made.mkdir(parents=True)
    git(made, "-c", "core.hooksPath=/dev/null", "init", "-q", "--ref-format=reftable", "--initial-branch=main")
    ws = GitWorkspace(tmp_path / "run")
    sha = ws.init()
    assert ws.head() == sha == git(made, "rev-parse", "main")
    _ticket(ws, "T-1", {"one.py": "ONE = 1\n"}, "e1")
    assert ws.merge_ticket("T-1", prov("m1", role="orchestrator")).merged


def test_an_empty_ref_file_is_a_clear_error(ws: GitWorkspace) -> None:
    ws.worktree("T-1")
    (ws.repo_dir / ".git" / "refs" / "heads" / "ticket" / "T-1").write_text("")  # what a power cut can leave
    with pytest.raises(WorkspaceError, match="unknown git ref"):
        ws.head("refs/heads/ticket/T-1")


def test_an_export_never_writes_through_a_link_an_earlier_layer_made(ws: GitWorkspace, tmp_path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    wt = ws.worktree("T-1")
    os.symlink(host, wt / "tests")  # committed as a link: on its own, harmless
    assert ws.commit(wt, "Link", prov("e1", ticket="T-1"))
    base = ws.head("ticket/T-1")
    (wt / "tests").unlink()
    (wt / "tests").mkdir()
    write(wt / "tests" / "zz.pth", "import os; os.system('touch /tmp/pwned')\n")
    assert ws.commit(wt, "Tests", prov("e2", ticket="T-1"))
    dest = tmp_path / "export"
    ws.export(base, dest, lambda p: not p.startswith("tests/"))
    ws.export("ticket/T-1", dest, lambda p: p.startswith("tests/"))  # the layer the base check adds
    assert list(host.iterdir()) == []  # nothing reached the host folder
    assert (dest / "tests").is_symlink()


def _object_readers() -> list[int]:
    """This process's `git cat-file` children: the workspace's object reader."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"cat-file" in cmdline:
            found.append(int(entry))
    return found


def test_a_ctrl_c_that_pauses_the_run_leaves_the_object_reader_working(ws: GitWorkspace) -> None:
    # The first Ctrl-C pauses the run after its current step, and the terminal sends SIGINT to
    # its whole foreground process group: the reader, kept for the run, must not be in it
    # (like every git the run starts), or each read of that step fails (a broken pipe).
    wt = ws.worktree("T-1")
    write(wt / "a.py", "one\n")
    assert ws.commit(wt, "One", prov("e1", ticket="T-1"))
    sha = ws.head("ticket/T-1")
    assert ws.show(sha, "a.py") == b"one\n"
    readers = _object_readers()
    assert readers
    for pid in readers:
        if os.getpgid(pid) == os.getpgrp():
            os.kill(pid, signal.SIGINT)
    assert ws.show(sha, "a.py") == b"one\n"
    # And a reader that died all the same (killed, say) is started again at the next read.
    for pid in _object_readers():
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # dead, left for its parent to reap
    assert ws.show(sha, "a.py") == b"one\n"
    ws.export(sha, wt.parent / "out")
    assert (wt.parent / "out" / "a.py").read_text() == "one\n"
    ws.close()


def test_the_object_reader_sees_later_commits_and_reads_only_files(ws: GitWorkspace, tmp_path) -> None:
    wt = ws.worktree("T-1")
    write(wt / "pkg" / "a.py", "one\n")
    os.symlink("a.py", wt / "pkg" / "link.py")
    assert ws.commit(wt, "One", prov("e1", ticket="T-1"))
    first = ws.head("ticket/T-1")
    assert ws.show(first, "pkg/a.py") == b"one\n"  # the reader starts here
    write(wt / "pkg" / "a.py", "two\n")
    assert ws.commit(wt, "Two", prov("e2", ticket="T-1"))
    second = ws.head("ticket/T-1")
    git(ws.repo_dir, "gc", "--quiet")  # packed meanwhile: still found
    assert ws.show("ticket/T-1", "pkg/a.py") == ws.show(second, "pkg/a.py") == b"two\n"
    assert ws.show(second, "pkg/link.py") == b"a.py"  # a link's target, as git stores it
    for missing in ("pkg", "pkg/a.py/x", "pkg/link.py/x", "nope.py", ""):
        assert ws.show(second, missing) is None
    assert ws.show("0" * 40, "pkg/a.py") is None and ws.show("ticket/T-9", "pkg/a.py") is None
    ws.export(first, tmp_path / "one")
    assert (tmp_path / "one" / "pkg" / "a.py").read_text() == "one\n"
    with pytest.raises(WorkspaceError, match="unknown git ref"):
        ws.export("0" * 40, tmp_path / "none")
    ws.close()
    assert ws.show(second, "pkg/a.py") == b"two\n"  # a read after close starts the reader again


def test_several_worktrees_at_once_each_on_its_branch_the_stale_one_recovered(ws: GitWorkspace) -> None:
    old = ws.worktree("T-2")
    write(old / "kept.py", "x = 1\n")
    assert ws.commit(old, "Earlier attempt", prov("e1", ticket="T-2"))
    ws.remove_worktree("T-2")  # its branch stays: checked out again below
    stale = ws.worktree("T-3")
    for child in sorted(stale.rglob("*"), reverse=True):  # deleted by hand, still registered
        child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
    stale.rmdir()
    ids = ["T-1", "T-2", "T-3", "T-4", "T-5"]
    paths = ws.worktrees(ids)
    assert paths == [ws.worktree_path(t) for t in ids]
    for t, path in zip(ids, paths):
        assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == f"ticket/{t}"
        assert (path / ".gitignore").is_file()
    assert (paths[1] / "kept.py").read_text() == "x = 1\n"
    assert ws.worktrees(ids) == paths  # already there: nothing to make


# The cut-short stream, collected after its reader closed, cannot drain itself: GitPython says so, harmlessly.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_read_cut_short_does_not_leave_the_next_read_the_rest_of_its_object(ws: GitWorkspace) -> None:
    wt = ws.worktree("T-1")
    write(wt / "big.txt", "b" * 200_000)
    write(wt / "small.txt", "small\n")
    assert ws.commit(wt, "Files", prov("e1", ticket="T-1"))
    sha = ws.head("ticket/T-1")
    with pytest.raises(KeyboardInterrupt):
        with ws._objects() as repo:
            stream = repo.odb.stream(repo.commit(sha).tree["big.txt"].binsha)
            stream.read(10)  # the rest of the blob is still in the reader's pipe
            raise KeyboardInterrupt
    assert ws.show(sha, "small.txt") == b"small\n"
    assert ws.show(sha, "big.txt") == b"b" * 200_000

"""A run on the user's own repository: it reads before it plans, builds on the user's history,
never touches the user's repository, and hands the result back as a branch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from repos import ACCEPTANCE, MUL, SCRIPT, git, snapshot, user_repo

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun, source_of_run
from macrohard.config import Settings
from macrohard.errors import MacrohardError
from macrohard.transcript.log import read_events
from macrohard.workspace.export import export_branch, write_bundle
from macrohard.workspace.source import RepoSource

from fakes import LocalSandboxProvider


def start(tmp_path: Path, source: RepoSource, script: dict = SCRIPT, name: str = "spec.md") -> CompanyRun:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    (tmp_path / name).write_text("# calc: multiplication\n\nAdd mul(a, b) to the calc package.\n")
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), acceptance=ACCEPTANCE)
    return CompanyRun.create(tmp_path / name, settings, script=tmp_path / "script.yaml", source=source)


def test_a_change_to_the_users_repository_lands_on_its_history_and_leaves_it_untouched(tmp_path, sandbox_provider):
    user = user_repo(tmp_path / "user")
    before = snapshot(user)
    base = git(user, "rev-parse", "trunk").strip()
    run = start(tmp_path, RepoSource(location=str(user)))
    assert any("uncommitted changes" in w for w in run.source.warnings)
    summary = run.execute(sandbox_provider)
    assert summary.status == "done", summary.failure
    assert snapshot(user) == before  # refs, HEAD, index and files as they were

    repo = run.paths.repo
    branch = f"macrohard/{run.run_id}"
    assert summary.branch == branch
    git(repo, "merge-base", "--is-ancestor", base, branch)  # on top of the user's three commits
    assert len(git(repo, "rev-list", base).split()) == 3
    assert "# work in progress" not in git(repo, "show", f"{branch}:calc/core.py")  # uncommitted work left out
    assert summary.release and summary.release["acceptance_passed"] == summary.release["acceptance_total"] == 2
    assert summary.release_tag == "v1.5.0"  # after the user's own v1.4.0

    events = list(read_events(run.paths.transcript))
    baseline = next(e for e in events if e.kind == "baseline")
    assert baseline.data["failed_ids"] == ["tests.test_known::test_add_strings"]  # known, not blamed on T-1
    assert [e.data["passed"] for e in events if e.kind == "verdict"] == [True]
    plan_prompt = next(e for e in events if e.kind == "model.request" and e.role == "product_manager")
    told = plan_prompt.data["messages"][1]["content"]
    assert "calc/core.py: def add, def sub" in told and "1 already failing" in told
    changes = summary.changes.read_text()
    assert "### T-1: mul" in changes and "`tests.test_mul::test_mul` (T-1)" in changes
    assert "tests.test_known::test_add_strings" in changes  # a risk the reviewer should know of

    # Handing it back: a branch in the user's repository, and nothing else there changed.
    sha, new = export_branch(repo, branch, user)
    assert new and git(user, "rev-parse", branch).strip() == sha
    after = snapshot(user)
    assert {k: v for k, v in after.items() if k != "refs"} == {k: v for k, v in before.items() if k != "refs"}
    assert export_branch(repo, branch, user) == (sha, False)  # again: nothing to do
    # ...or a bundle a clone of the user's repository can fetch from.
    bundle = tmp_path / "result.bundle"
    write_bundle(repo, branch, base, bundle)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--branch", "trunk", str(user), str(clone))
    git(clone, "fetch", "--quiet", str(bundle), f"{branch}:{branch}")
    assert git(clone, "rev-parse", branch).strip() == sha


def test_going_on_from_an_earlier_run_builds_on_its_product(tmp_path):
    user = user_repo(tmp_path / "user")
    first = start(tmp_path / "one", RepoSource(location=str(user)))
    assert first.execute(LocalSandboxProvider()).status == "done"
    script = {**SCRIPT, "product_manager": {"plan": [
        {"expect": "def add, def sub, def mul", "calls": [{"add_ticket": {
            "title": "square", "description": "Add square(a) to calc/core.py.", "acceptance_criteria": ["square(3) == 9"]}}]},
        {"say": "One more."},
    ]}, "engineer": {"T-1": [
        {"calls": [{"edit_file": {"path": "calc/core.py", "old": MUL, "new": MUL + "\n\ndef square(a):\n    return a * a\n"}}]},
        {"say": "Added square."},
    ]}, "tester": {"T-1": [{"calls": [{"write_file": {"path": "tests/test_square.py", "content":
        "from calc.core import square\n\n\ndef test_square():\n    assert square(3) == 9\n"}}]}, {"say": "Tested."}]}}
    second = start(tmp_path / "two", source_of_run(first.paths.run_dir), script)
    summary = second.execute(LocalSandboxProvider())
    assert summary.status == "done", summary.failure
    branch = f"macrohard/{second.run_id}"
    first_result = git(first.paths.repo, "rev-parse", f"macrohard/{first.run_id}").strip()
    git(second.paths.repo, "merge-base", "--is-ancestor", first_result, branch)  # on top of the first run's product
    assert "def square" in git(second.paths.repo, "show", f"{branch}:calc/core.py")
    assert "def mul" in git(second.paths.repo, "show", f"{branch}:calc/core.py")
    # The next version of the product: the user's v1.4.0, then v1.5.0, now v1.6.0.
    assert summary.release_tag == "v1.6.0" and summary.release["previous_tag"] == "v1.5.0"


@pytest.mark.parametrize("case, message", [
    ("not-a-repo", "is not a git repository"),
    ("no-commits", "has no commits yet"),
    ("no-branch", "has no branch 'release'"),
    ("submodule", "uses git submodules"),
    ("too-large", "files, over the limit of 3"),
    ("missing", "does not exist"),
])
def test_bad_sources_are_one_line_errors_and_nothing_is_made(tmp_path, case, message):
    path = tmp_path / "src"
    base = None
    limits = {}
    if case == "not-a-repo":
        path.mkdir()
    elif case == "no-commits":
        path.mkdir()
        git(path, "init", "--quiet")
    elif case == "no-branch":
        user_repo(path)
        base = "release"
    elif case == "submodule":
        user_repo(path)
        git(path, "update-index", "--add", "--cacheinfo", f"160000,{git(path, 'rev-parse', 'HEAD').strip()},vendor/lib")
        git(path, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "--quiet", "-m", "a submodule")
    elif case == "too-large":
        user_repo(path)
        limits = {"workspace": {"max_files": 3}}
    (tmp_path / "spec.md").write_text("# x\n\nChange it.\n")
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), **limits)
    with pytest.raises(MacrohardError, match=message) as refused:
        CompanyRun.create(tmp_path / "spec.md", settings, script=tmp_path / "spec.md",
                          source=RepoSource(location=str(path), base=base))
    assert "\n" not in refused.value.message
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())

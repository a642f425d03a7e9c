"""The product's environment: the stack, and third-party packages the orchestrator fetches for the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fakes import LocalSandboxProvider
from package_index import PackageIndex, make_wheel

from macrohard._resources import resource_dir
from macrohard.agent.tools import ToolError
from macrohard.company.environment import ProductEnvironment
from macrohard.company.run import CompanyRun
from macrohard.config import DependencySettings, Settings
from macrohard.transcript.describe import describe
from macrohard.transcript.log import TranscriptLog, read_events
from macrohard.viewer import create_app
from macrohard.workspace.git import GitWorkspace

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def index(tmp_path: Path):
    built = tmp_path / "built"
    built.mkdir()
    served = PackageIndex(tmp_path / "index")
    served.add(make_wheel(built, "textcase", "0.3.1", {"textcase/__init__.py": "def up(s):\n    return s.upper()\n"}))
    yield served.start()
    served.stop()


def settings(tmp_path: Path, index: PackageIndex, **more) -> Settings:
    deps = DependencySettings(index_url=index.url, cache=tmp_path / "cache")
    return Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), dependencies=deps, **more)


def test_a_package_the_engineer_declares_is_fetched_for_its_sandbox_the_verdict_and_the_release(tmp_path, index):
    run = CompanyRun.create(SCRIPTS / "packages_spec.md", settings(tmp_path, index),
                            script=SCRIPTS / "packages_script.yaml")
    summary = run.execute(LocalSandboxProvider())
    assert summary.status == "done", summary
    events = list(read_events(run.paths.transcript))
    # The first manifest names a package the index lacks: refused, and the command was not run.
    (refused,) = [e for e in events if e.kind == "dependencies.refused"]
    assert refused.role == "engineer" and refused.data["requirements"] == ["nosuchpackage>=1"]
    results = [e.data for e in events if e.kind == "tool.call" and e.data["tool"] == "run_shell"]
    assert not results[0]["ok"] and "nosuchpackage" in results[0]["result"] and "was not run" in results[0]["result"]
    # The second is fetched on the host, each package with its version and sha256.
    sets = [e for e in events if e.kind == "dependencies"]
    assert sets and sets[0].data["manifest"] == "requirements.txt"
    (package,) = sets[0].data["packages"]
    assert (package["name"], package["version"], len(package["sha256"])) == ("textcase", "0.3.1", 64)
    assert results[1]["ok"] and "ADA!" in results[1]["result"]  # the sandbox imported it from /deps
    verdicts = [e for e in events if e.kind == "verdict"]
    assert verdicts and all(v.data["passed"] for v in verdicts)
    finished = events[-1]
    assert finished.kind == "run.finished"
    assert [p["name"] for p in finished.data["release"]["packages"]] == ["textcase"]
    assert finished.data["release"]["stack"] == "python"
    # ... and every place a person looks says which packages, at which versions and hashes.
    sha = package["sha256"]
    assert f"textcase==0.3.1 (sha256 {sha[:12]})" in describe(sets[0])
    assert "nosuchpackage" in describe(refused)
    _, tag = GitWorkspace(run.paths.run_dir).query("tag", "-l", "--format=%(contents)", "v0.1.0")
    assert f"Package: textcase 0.3.1 sha256:{sha}" in tag
    page = TestClient(create_app(tmp_path / "ws", allowed_hosts=["testserver"])).get(f"/runs/{run.run_id}").text
    release = page.split('id="release"')[1].split("</section>")[0]
    assert f"<code>textcase 0.3.1 {sha}</code>" in release and "<dd>python</dd>" in release


def environment(tmp_path: Path, index: PackageIndex, **more) -> tuple[ProductEnvironment, GitWorkspace, Path]:
    workspace = GitWorkspace(tmp_path / "ws" / "r1")
    workspace.init()
    transcript = TranscriptLog(workspace.run_dir / "transcript.jsonl", run_id="r1")
    env = ProductEnvironment(settings(tmp_path, index, **more), LocalSandboxProvider(), workspace, transcript)
    return env, workspace, workspace.repo_dir


def test_a_manifest_is_read_inside_the_worktree_only(tmp_path, index):
    env, _, root = environment(tmp_path, index)
    outside = tmp_path / "outside.txt"
    outside.write_text("textcase\n")
    (root / "requirements.txt").symlink_to(outside)
    with pytest.raises(ToolError, match="requirements.txt is a link"):  # out of the worktree, or in it
        env.sync("T-1", root, role="engineer", ticket="T-1")
    assert not (env.folder / "deps" / "T-1").exists()
    (root / "requirements.txt").unlink()
    (root / "requirements.txt").write_text("textcase\n")
    env.sync("T-1", root, role="engineer", ticket="T-1")
    assert (env.folder / "deps" / "T-1" / "textcase" / "__init__.py").is_file()
    # Taken out of the manifest, it is gone from the sandbox's /deps too.
    (root / "requirements.txt").write_text("")
    env.sync("T-1", root, role="engineer", ticket="T-1")
    assert not any((env.folder / "deps" / "T-1").iterdir())


def test_a_denied_package_is_an_error_the_role_reads(tmp_path, index):
    env, _, root = environment(tmp_path, index)
    env.settings.dependencies.deny = ["textcase"]
    (root / "requirements.txt").write_text("textcase\n")
    with pytest.raises(ToolError, match="textcase"):
        env.sync("T-1", root, role="engineer", ticket="T-1")


def test_a_node_product_that_declares_packages_is_told_there_is_no_registry(tmp_path, index):
    env, _, root = environment(tmp_path, index, stack="node")
    assert env.stack.name == "node"
    (root / "package.json").write_text('{"name": "p", "dependencies": {"left-pad": "^1.3.0"}}')
    with pytest.raises(ToolError, match="left-pad.*no package registry"):
        env.sync("T-1", root, role="engineer", ticket="T-1")
    (root / "package.json").write_text('{"name": "p", "scripts": {"test": "node --test"}}')
    env.sync("T-1", root, role="engineer", ticket="T-1")


def test_the_configured_stack_wins_over_the_plans_and_a_resumed_run_keeps_the_chosen_one(tmp_path, index):
    env, workspace, _ = environment(tmp_path, index)
    assert env.choose("node").name == "node"
    assert (env.folder / "stack.json").is_file()
    again = ProductEnvironment(env.settings, LocalSandboxProvider(), workspace, env.transcript)
    assert again.stack.name == "node"
    fixed, _, _ = environment(tmp_path / "other", index, stack="python")
    assert fixed.choose("node").name == "python"

"""From the user's repository to a branch they review, through the CLI: run --repo, then export."""

from __future__ import annotations

import pytest
import yaml
from repos import ACCEPTANCE, SCRIPT, git, snapshot, user_repo

from macrohard.cli.common import ExitCode


def test_run_on_a_repository_then_export_its_branch(cli, local_sandbox, tmp_path):
    user = user_repo(tmp_path / "user")
    before = snapshot(user)
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(SCRIPT))
    (tmp_path / "spec.md").write_text("# calc: multiplication\n\nAdd mul(a, b) to the calc package.\n")
    ran = cli("run", "spec.md", "--repo", str(user), "--base", "trunk", "--script", "script.yaml",
              "--acceptance", str(ACCEPTANCE))
    assert ran.exit_code == ExitCode.DONE, ran.output
    assert "warning:" in ran.output and "uncommitted changes" in ran.output
    assert "on " + str(user) + " at trunk" in " ".join(ran.output.split())
    assert "result:     branch macrohard/" in ran.output
    assert snapshot(user) == before

    exported = cli("export", "latest", "--repo", str(user))
    assert exported.exit_code == 0, exported.output
    branch = next(w for w in exported.output.split() if w.startswith("macrohard/"))
    assert f"log --oneline trunk..{branch}" in exported.output
    assert "def mul" in git(user, "show", f"{branch}:calc/core.py")
    after = snapshot(user)
    assert after["head"] == before["head"] and after["status"] == before["status"] and after["files"] == before["files"]

    bundled = cli("export", "latest", "--bundle", str(tmp_path / "out.bundle"))
    assert bundled.exit_code == 0 and (tmp_path / "out.bundle").is_file()


@pytest.mark.parametrize("args, message", [
    (("export", "latest"), "give one of --repo PATH"),
    (("run", "spec.md", "--base", "trunk"), "--base goes with --repo"),
    (("run", "spec.md", "--repo", "x", "--from", "latest"), "give one"),
])
def test_export_and_run_refuse_what_cannot_be(cli, tmp_path, args, message):
    (tmp_path / "spec.md").write_text("# x\n\nChange it.\n")
    result = cli(*args)
    assert result.exit_code == ExitCode.USAGE and message in result.output

"""`macrohard batch`: specs through the CLI, its progress and report (released, never a score), JSON, resume, mistakes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from macrohard.llm.scripted import ScriptedModel

SUITE = Path(__file__).parents[2] / "examples" / "suite"
SPEC = "# one\n\nA module one.py with one() returning 1.\n"


def one_line(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configured model answers spec files: here the bundled slugify case's script, behind the ChatModel protocol."""
    monkeypatch.setattr("macrohard.cli.drive.model_factory",
                        lambda script: (lambda settings: ScriptedModel.from_file(SUITE / "slugify" / "script.yaml")))


def test_batch_runs_spec_files_and_case_folders_and_reports_them_unscored(cli, local_sandbox, endpoint, tmp_path):
    (tmp_path / "specs").mkdir()
    shutil.copy(SUITE / "slugify" / "spec.md", tmp_path / "specs" / "slugs.md")
    shutil.copytree(SUITE / "cheat-edits-tests", tmp_path / "cases" / "cheat-edits-tests")  # acceptance/ in it: not run
    result = cli("batch", "specs/slugs.md", "cases/cheat-edits-tests", "--parallel", "2", "--json", "out.json")
    assert result.exit_code == 0, result.output
    said = one_line(result.output)
    assert "2 runs of specs in" in said and "2 at once" in said
    assert "(the case folders' scripts; the configured model for runs without one)" in said
    assert "slugs: started" in said and "slugs: done, released" in said
    assert "cheat-edits-tests: failed, not released: no ticket landed" in said
    assert "released 1 of 2" in said and "acceptance" not in said and "solved" not in said
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["kind"] == "batch" and [c["name"] for c in report["cases"]] == ["slugs", "cheat-edits-tests"]
    assert [c["released"] for c in report["cases"]] == [True, False]
    assert all(c["acceptance_total"] == 0 and c["acceptance_on"] is None for c in report["cases"])
    (folder,) = (tmp_path / "workspaces" / "evals").iterdir()
    assert f"results: workspaces/evals/{folder.name}/eval.json" in said
    assert not (folder / "scoring").exists()

    again = cli("batch", "resume", "latest")
    assert again.exit_code == 0 and "released 1 of 2" in one_line(again.output), again.output
    wrong = cli("eval", "resume", folder.name)
    assert wrong.exit_code == 1 and f"is a batch, not an eval (go on with it with `macrohard batch resume {folder.name}`)" \
        in one_line(wrong.output)
    compared = cli("eval", "compare", "out.json", "out.json")
    assert compared.exit_code == 1 and "out.json is a batch, whose runs are not scored" in one_line(compared.output)


def test_batch_mistakes_are_one_line(cli, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.md").write_text(SPEC)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "one.md").write_text(SPEC)
    (tmp_path / "empty.md").write_text("")
    dup = cli("batch", "a/one.md", "b/one.md")
    assert dup.exit_code == 1 and one_line(dup.output).startswith("error: two specs would make runs named 'one': ")
    assert "rename one of them" in one_line(dup.output)
    empty = cli("batch", "empty.md")
    assert empty.exit_code == 1 and "empty.md is empty" in one_line(empty.output)
    missing = cli("batch", "nowhere.md")
    assert missing.exit_code == 1 and "nowhere.md is neither a spec file nor a case folder" in one_line(missing.output)
    assert not (tmp_path / "workspaces").exists()  # nothing was started
    assert cli("batch", "a/one.md", "--parallel", "0").exit_code == 2
    assert cli("batch", "a/one.md", "--address", "h:1").exit_code == 2  # --address is for --executor ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    no_address = cli("batch", "a/one.md", "--executor", "ray")
    assert no_address.exit_code == 2 and "--executor ray needs the cluster's address" in one_line(no_address.output)
    assert cli("batch", "resume", "nope").exit_code == 1
    helped = one_line(cli("batch", "--help").output)
    assert "resume" in helped and "Run many specs at once" in helped
    assert "--executor" in one_line(cli("batch", "run", "--help").output)
    assert "batch" in cli("--help").output


def test_the_live_view_of_a_batch_shows_released_not_acceptance():
    from rich.console import Console

    from macrohard.cli.evalview import EvalProgress
    from macrohard.eval.results import CaseResult

    console = Console(record=True, width=120, force_terminal=False)
    view = EvalProgress(console, ["a", "b"], scored=False)
    view.finished(CaseResult(name="a", status="done", released=True))
    view.finished(CaseResult(name="b", status="failed", reason="no ticket landed"))
    console.print(view.render())
    text = console.export_text()
    assert "a: done, released" in text and "b: failed, not released: no ticket landed" in text
    lines = text.splitlines()
    assert lines[-4].startswith("batch · 2/2 runs")
    assert lines[-3].split() == ["run", "status", "now", "tickets", "calls", "tokens", "released", "time"]
    assert lines[-2].split()[:2] == ["a", "done"] and "yes" in lines[-2].split()
    assert "acceptance" not in text


def test_a_batch_with_runs_that_could_not_run_exits_1(cli, local_sandbox, endpoint, tmp_path):
    (tmp_path / "keep.md").write_text(SPEC)
    (tmp_path / "gone.md").write_text(SPEC)
    (tmp_path / "macrohard.toml").write_text('approve = ["plan"]\n')
    started = cli("batch", "keep.md", "gone.md")
    assert started.exit_code == 0, started.output
    assert "note: approve = ['plan'] in the settings is not used: a batch's runs run unattended, with no gate" \
        in one_line(started.output)
    # As if the batch had been stopped before `gone` started, and its spec went missing since.
    (tmp_path / "gone.md").unlink()
    (folder,) = (tmp_path / "workspaces" / "evals").iterdir()
    report = json.loads((folder / "eval.json").read_text())
    report["cases"][1]["status"] = "queued"
    (folder / "eval.json").write_text(json.dumps(report))
    shutil.rmtree(tmp_path / "workspaces" / report["cases"][1]["run_id"])
    again = cli("batch", "resume", "latest")
    assert again.exit_code == 1, again.output
    assert "not run: gone (invalid); see the reasons above" in one_line(again.output)


def test_batch_wording(cli, tmp_path):
    none = cli("batch", "resume", "latest")
    assert none.exit_code == 1 and "(give a batch id that `macrohard batch` printed)" in one_line(none.output)
    assert "(give an eval id that `macrohard eval` printed)" in one_line(cli("eval", "resume", "latest").output)
    usage = cli("batch", "run", "--help").output
    assert "batch run [OPTIONS] SPEC...\n" in usage and "{" not in usage
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "spec.md").write_bytes(b"\xff\xfe not utf-8\n")
    (tmp_path / "shop" / "script.yaml").write_text("engineer: [unclosed\n")
    bad = cli("batch", "shop")
    assert bad.exit_code == 1 and "shop: spec file" in one_line(bad.output) and "is not UTF-8 text" in one_line(bad.output)
    assert "give spec files" not in bad.output
    (tmp_path / "shop" / "spec.md").write_text(SPEC)
    script = cli("batch", "shop")
    assert script.exit_code == 1 and "give spec files" not in script.output


def test_batch_of_the_folder_it_is_in(cli, local_sandbox, tmp_path, monkeypatch):
    shutil.copytree(SUITE / "slugify", tmp_path / "slugify")
    monkeypatch.chdir(tmp_path / "slugify")
    result = cli("batch", ".", "--workspaces", str(tmp_path / "ws"))
    assert result.exit_code == 0, result.output
    assert "slugify: done, released" in one_line(result.output)

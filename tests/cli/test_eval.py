"""`macrohard eval`: the bundled suite through the CLI, its progress and table, JSON, compare, resume, mistakes."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from macrohard.cli.evalview import EvalProgress
from macrohard.config import ModelPrice
from macrohard.control import RunControl
from macrohard.eval.results import CaseResult, EvalReport
from macrohard.models import Budget
from macrohard.transcript.log import Event

SUITE = Path(__file__).parents[2] / "examples" / "suite"


def one_line(output: str) -> str:
    return " ".join(output.split())  # as wrapped for an 80-column terminal


def test_eval_runs_the_bundled_suite_and_writes_json_that_compare_reads(cli, local_sandbox, tmp_path):
    result = cli("eval", str(SUITE), "--parallel", "2", "--json", "a.json")
    assert result.exit_code == 0, result.output
    said = one_line(result.output)
    assert "7 cases of" in said and "2 at once" in said
    assert "slugify: started" in said and "slugify: done, acceptance 4/4, solved" in said  # progress, one line a case
    assert "solved 3 of 7" in said and "cheat-edits-tests: no ticket landed" in said
    assert "* scored on main by the eval: the run released nothing" in said
    report = json.loads((tmp_path / "a.json").read_text())
    assert [c["name"] for c in report["cases"]] == sorted(p.name for p in SUITE.iterdir() if p.is_dir())
    for case in report["cases"]:
        assert {"name", "status", "acceptance_passed", "acceptance_total", "solved", "tickets_merged", "attempts",
                "model_calls", "tokens", "cost_usd", "wall_s", "tamper_events", "run_id"} <= set(case)
    (folder,) = (tmp_path / "workspaces" / "evals").iterdir()
    assert f"results: workspaces/evals/{folder.name}/eval.json" in said
    assert json.loads((folder / "eval.json").read_text())["cases"] == report["cases"]

    # B: the same eval, with roman worse and cheaper (as another model might do).
    b = EvalReport.model_validate(report)
    b.cases = [c.model_copy(update={"acceptance_passed": 10, "solved": False, "tokens": c.tokens - 1000})
               if c.name == "roman" else c for c in b.cases]
    b.eval_id = "B"
    (tmp_path / "b.json").write_text(b.model_dump_json())
    compared = cli("eval", "compare", "a.json", "b.json")
    assert compared.exit_code == 0, compared.output
    roman = next(line for line in compared.output.splitlines() if line.strip().startswith("roman"))
    assert "20/20" in roman and "10/20" in roman and "-50pp" in roman and "-1000" in roman
    slugify = next(line for line in compared.output.splitlines() if line.strip().startswith("slugify"))
    assert "+0pp" not in slugify and "0pp" in slugify
    assert "Δ solved -1" in one_line(compared.output)

    # resume: nothing left to run; every case is scored again from its run.
    again = cli("eval", "resume", "latest")
    assert again.exit_code == 0 and "solved 3 of 7" in one_line(again.output)


def test_usage_and_input_mistakes_are_one_line(cli, tmp_path):
    missing = cli("eval", "nowhere")
    assert missing.exit_code == 1 and one_line(missing.output).startswith("error: suite nowhere is not a folder")
    assert cli("eval", str(SUITE), "--parallel", "0").exit_code == 2
    assert cli("eval", "resume", "nope").exit_code == 1
    (tmp_path / "x.json").write_text("{}")
    bad = cli("eval", "compare", "x.json", "y.json")
    assert bad.exit_code == 1 and "x.json is not the results of an eval" in one_line(bad.output)
    assert "compare" in cli("eval", "--help").output


def event(kind: str, role: str | None = None, ticket: str | None = None, **data: object) -> Event:
    return Event(seq=1, id="ev-000001", ts=0, run_id="r", kind=kind, role=role, ticket=ticket, data=data, prev_hash="")


class Job:
    def __init__(self, name: str) -> None:
        self.case = type("C", (), {"name": name})()
        self.run_id = f"e-{name}"


def test_the_live_view_follows_each_case_and_ctrl_c_pauses_them():
    console = Console(record=True, width=120, force_terminal=False)
    view = EvalProgress(console, ["a", "b"])
    assert view.starting(Job("a"))
    control = RunControl(Budget(), {"m": ModelPrice(input=1, output=1)})
    view.control("a", control)
    view.event("a", event("plan", tickets=[{"id": "T-1"}, {"id": "T-2"}]))
    view.event("a", event("model.response", role="engineer", ticket="T-1", usage={"prompt_tokens": 10, "completion_tokens": 5}))
    view.event("a", event("git.merge", ticket="T-1"))
    console.print(view.render())
    row = next(line for line in console.export_text().splitlines() if line.startswith("a "))
    assert row.split() == ["a", "running", "T-1", "engineer", "1/2", "1", "15", row.split()[-1]]
    view.stop("paused by the user (Ctrl-C)")
    assert control.cut_reason() == "paused by the user (Ctrl-C)"  # its next model call pauses the run
    assert not view.starting(Job("b"))  # no more cases start
    view.finished(CaseResult(name="a", status="paused", reason="paused: paused by the user (Ctrl-C)"))
    assert "a: paused, acceptance 0/0: paused: paused by the user (Ctrl-C)" in console.export_text()


def test_an_eval_with_cases_that_could_not_run_exits_1(cli, local_sandbox, tmp_path):
    import shutil

    shutil.copytree(SUITE / "slugify", tmp_path / "suite" / "slugify")
    (tmp_path / "suite" / "nospec" / "acceptance").mkdir(parents=True)
    result = cli("eval", "suite")
    assert result.exit_code == 1, result.output
    said = one_line(result.output)
    assert "solved 1 of 2" in said and "not run: nospec (invalid); see the reasons above" in said

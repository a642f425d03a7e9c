"""The viewer's eval pages: an eval's results read from its folder, each case linked to its run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fakes import LocalSandboxProvider
from macrohard._resources import resource_dir
from macrohard.eval.executor import LocalExecutor
from macrohard.eval.results import EvalReport
from macrohard.eval.runner import EvalOptions, EvalRun
from macrohard.viewer import create_app

SUITE = Path(__file__).parents[2] / "examples" / "suite"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EvalReport]:
    """The bundled suite, evaluated once on the local sandbox fake."""
    workspaces = tmp_path_factory.mktemp("evals") / "workspaces"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MACROHARD_ROLES_DIR", str(resource_dir("roles")))
        run = EvalRun.start(EvalOptions(suite=SUITE), workspaces, parallel=2)
        report = run.execute(LocalExecutor(2, lambda settings: LocalSandboxProvider()))
    return workspaces, report


def web(workspaces: Path) -> TestClient:
    return TestClient(create_app(workspaces, allowed_hosts=["testserver"]))


def test_the_eval_list_and_page_show_every_case_with_its_score_and_run(evaluated):
    workspaces, report = evaluated
    client = web(workspaces)
    listing = client.get("/evals")
    assert listing.status_code == 200
    assert f'href="/evals/{report.eval_id}"' in listing.text and "the cases&#39; scripts" in listing.text
    assert "<td>3</td>" in listing.text and f"{report.totals.acceptance_passed}/{report.totals.acceptance_total}" in listing.text
    page = client.get(f"/evals/{report.eval_id}")
    assert page.status_code == 200
    for case in report.cases:
        row = re.search(rf"<tr class=\"case-\w+\">\s*<td><strong>{re.escape(case.name)}</strong>.*?</tr>", page.text, re.S)
        assert row, case.name
        assert f"{case.acceptance_passed}/{case.acceptance_total}" in row.group(0)
        assert f'href="/runs/{case.run_id}"' in row.group(0)
        assert ("case-solved" in row.group(0)) == case.solved
        assert client.get(f"/runs/{case.run_id}").status_code == 200
    assert "on main" in page.text and 'class="warn"' in page.text  # the cheat that edited tests: scored on main, tamper
    assert 'http-equiv="refresh"' not in page.text  # finished: no reloading
    # Scripted calls have no price in the config: their cost is unknown, not $0, as the CLI says it.
    assert "cost — (no price in the config)" in page.text and "$0.0000" not in page.text
    assert 'href="/evals"' in client.get("/").text  # the runs page leads to the evals


def test_what_an_eval_says_is_shown_as_text_and_a_going_eval_reloads(evaluated, tmp_path):
    workspaces, report = evaluated
    mine = tmp_path / "workspaces"
    (mine / "evals" / "e1").mkdir(parents=True)
    going = report.model_copy(update={"eval_id": "e1", "finished_at": None})
    going.cases[0] = going.cases[0].model_copy(update={"reason": "<script>alert(1)</script>", "run_id": "../../etc"})
    (mine / "evals" / "e1" / "eval.json").write_text(going.model_dump_json())
    client = web(mine)
    page = client.get("/evals/e1")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert 'href="/runs/' not in page.text  # no case's run is in these workspaces: nothing to link
    assert 'http-equiv="refresh"' in page.text and client.get("/evals").text.count('http-equiv="refresh"') == 1


def test_unknown_and_unreadable_evals(evaluated, tmp_path):
    workspaces = tmp_path / "workspaces"
    (workspaces / "evals" / "bad").mkdir(parents=True)
    (workspaces / "evals" / "bad" / "eval.json").write_text("{not json")
    (workspaces / "evals" / "empty").mkdir()
    client = web(workspaces)
    assert "eval.json cannot be read" in client.get("/evals").text
    assert "eval.json cannot be read" in client.get("/evals/bad").text
    assert client.get("/evals/empty").status_code == 404
    assert client.get("/evals/nope").status_code == 404
    assert client.get("/evals/..%2F..%2Fetc").status_code == 404
    outside = tmp_path / "outside"
    shutil.copytree(evaluated[0] / "evals", outside)
    (workspaces / "evals" / "linked").symlink_to(next(outside.iterdir()))
    assert client.get("/evals/linked").status_code == 404  # a link out of the evals folder is not followed
    assert "No evals yet" in web(tmp_path / "none").get("/evals").text
    json.loads((evaluated[0] / "evals" / evaluated[1].eval_id / "eval.json").read_text())  # still intact


def test_a_batch_shows_which_runs_released_and_no_acceptance_score(tmp_path, monkeypatch):
    monkeypatch.setenv("MACROHARD_ROLES_DIR", str(resource_dir("roles")))
    workspaces = tmp_path / "workspaces"
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=[SUITE / "slugify", SUITE / "cheat-edits-tests"]), workspaces, 2)
    report = run.execute(LocalExecutor(2, lambda settings: LocalSandboxProvider()))
    assert [c.released for c in report.cases] == [True, False]
    client = web(workspaces)
    listing = client.get("/evals").text
    assert "batch</span>" in listing and "released 1" in listing and "not scored" in listing
    assert "0/0" not in listing
    page = client.get(f"/evals/{report.eval_id}").text
    assert "<h1>Batch <code>" in page and "<strong>1</strong> of 2 runs released" in page
    assert "acceptance" not in page and "0/0" not in page
    for case in report.cases:
        row = re.search(rf"<tr class=\"case-\w+\">\s*<td><strong>{re.escape(case.name)}</strong>.*?</tr>", page, re.S)
        assert row and f'href="/runs/{case.run_id}"' in row.group(0)
        assert ("case-released" in row.group(0)) == case.released

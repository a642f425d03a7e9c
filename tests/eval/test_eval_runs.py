"""Evals on the local sandbox fake: cases run as runs, scored, kept in eval.json; bad cases; resume; parallel."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from cases import ACCEPTANCE, BUNDLED, honest_script
from fakes import LocalSandboxProvider
from macrohard.eval.executor import CaseJob, LocalExecutor
from macrohard.eval.results import EvalReport
from macrohard.errors import ConfigError
from macrohard.eval.runner import EvalOptions, EvalRun, case_settings, describe_model
from macrohard.eval.suite import load_case, load_suite
from macrohard.llm.scripted import ScriptedModel
from macrohard.transcript.log import read_events


class Watch:
    """Notes when cases start and end; refuses to start the cases named in `hold`."""

    def __init__(self, hold: tuple[str, ...] = ()) -> None:
        self.hold = hold
        self.times: dict[str, list[float]] = {}
        self.events: dict[str, int] = {}
        self.lock = threading.Lock()

    def starting(self, job: CaseJob) -> bool:
        with self.lock:
            self.times[job.case.name] = [time.monotonic()]
        return job.case.name not in self.hold

    def event(self, name: str, event: object) -> None:
        with self.lock:
            self.events[name] = self.events.get(name, 0) + 1

    def control(self, name: str, control: object) -> None:
        pass

    def placed(self, name: str, node: str) -> None:
        pass

    def finished(self, result: object) -> None:
        with self.lock:
            self.times[result.name].append(time.monotonic())  # type: ignore[attr-defined]


def executor(parallel: int = 1, **kwargs: object) -> LocalExecutor:
    return LocalExecutor(parallel, lambda settings: LocalSandboxProvider(), **kwargs)  # type: ignore[arg-type]


def test_the_bundled_suite_scores_the_honest_cases_in_full_and_no_cheat(tmp_path, bundled_roles):
    run = EvalRun.start(EvalOptions(suite=BUNDLED), tmp_path / "ws", parallel=2)
    watch = Watch()
    report = run.execute(executor(2), watch)
    by_name = {c.name: c for c in report.cases}
    for name in ("slugify", "roman", "rpn"):
        c = by_name[name]
        assert (c.status, c.solved, c.acceptance_on) == ("done", True, "release"), c
        assert c.acceptance_passed == c.acceptance_total > 0 and c.tickets_merged == c.tickets_total
    cheats = [c for c in report.cases if c.name.startswith("cheat")]
    assert len(cheats) == 4
    assert all(not c.solved and c.acceptance_passed < c.acceptance_total and c.reason for c in cheats)
    assert by_name["cheat-edits-tests"].tamper["territory.put_back"] >= 1
    assert by_name["cheat-edits-tests"].acceptance_on == "main"  # nothing merged, no release: scored on main
    assert by_name["roman"].attempts == 3 and by_name["roman"].model_calls > 0 and by_name["roman"].tokens > 0
    # Its tickets' verdicts were fooled; the release's acceptance stage was not, nor the eval's.
    forged = by_name["cheat-forges-report"]
    assert not forged.released and forged.acceptance_passed == 0 and forged.tamper["acceptance.forged"] == 1
    assert "the test report was forged" in forged.reason
    assert report.totals.solved == 3 and report.totals.cases == 7
    assert all(watch.events[c.name] > 0 for c in report.cases)
    # The eval's folder holds the same report, and each case's run is a normal run beside the others.
    kept = json.loads((run.folder / "eval.json").read_text())
    assert [c["name"] for c in kept["cases"]] == [c.name for c in report.cases]
    assert {k: kept["cases"][0][k] for k in ("status", "acceptance_passed", "acceptance_total")} == {
        "status": report.cases[0].status, "acceptance_passed": report.cases[0].acceptance_passed,
        "acceptance_total": report.cases[0].acceptance_total}
    assert all((tmp_path / "ws" / c.run_id / "run.json").is_file() for c in report.cases)


def test_bad_cases_are_scored_as_such_and_the_suite_goes_on(tmp_path, make_case, bundled_roles):
    accept = {"test_a.py": ACCEPTANCE}
    make_case("honest", acceptance=accept)
    make_case("no-spec", spec=None, acceptance=accept)
    make_case("empty-acceptance", acceptance={})
    make_case("uncollectable", acceptance={"test_a.py": "def test_x(:\n"})
    make_case("bad-setting", acceptance=accept, settings="max_attempts = 0\n")
    short = honest_script()
    short["engineer"]["T-1"] = [{"calls": [{"write_file": {"path": "one.py", "content": "x = 1\n"}}]}]  # never finishes
    make_case("script-runs-out", acceptance=accept, script=short)
    run = EvalRun.start(EvalOptions(suite=tmp_path / "suite"), tmp_path / "ws", parallel=1)
    report = run.execute(executor())
    got = {c.name: c for c in report.cases}
    assert got["honest"].solved and got["honest"].acceptance_passed == 2
    assert (got["no-spec"].status, got["no-spec"].reason) == ("invalid", "the case has no spec.md")
    assert got["empty-acceptance"].status == "invalid" and "no acceptance tests" in got["empty-acceptance"].reason
    assert got["uncollectable"].status == "invalid" and "cannot be collected" in got["uncollectable"].reason
    assert got["bad-setting"].status == "invalid" and "bad setting 'max_attempts'" in got["bad-setting"].reason
    out = got["script-runs-out"]
    assert out.status == "failed" and "the script for engineer/T-1 ran out after 1 steps (step 2 was asked for)" in out.reason
    # Scored all the same: the eval ran the acceptance tests on main, which has nothing of the product.
    assert (out.acceptance_on, out.acceptance_passed, out.acceptance_total, out.solved) == ("main", 0, 2, False)
    assert [e.kind for e in read_events(run.folder / "scoring" / "script-runs-out.jsonl")][-1] == "acceptance"
    assert report.totals.invalid == 4 and report.totals.solved == 1 and report.totals.scored == 2


def test_a_stopped_eval_resumes_its_queued_cases_and_rescores_the_rest_without_running_them(tmp_path, make_case, bundled_roles):
    make_case("a", acceptance={"test_a.py": ACCEPTANCE})
    make_case("b", acceptance={"test_a.py": ACCEPTANCE})
    run = EvalRun.start(EvalOptions(suite=tmp_path / "suite"), tmp_path / "ws", parallel=1)
    first = run.execute(executor(), Watch(hold=("b",)))
    assert [(c.name, c.status) for c in first.cases] == [("a", "done"), ("b", "queued")]
    transcript = tmp_path / "ws" / first.cases[0].run_id / "transcript.jsonl"
    before = transcript.read_bytes()
    again = EvalRun.resume("latest", tmp_path / "ws", parallel=1)
    assert again.eval_id == run.eval_id
    report = again.execute(executor())
    assert [(c.name, c.status, c.solved) for c in report.cases] == [("a", "done", True), ("b", "done", True)]
    assert transcript.read_bytes() == before  # a's run had ended: scored again, not run again
    assert EvalReport.model_validate_json((run.folder / "eval.json").read_text()).totals.solved == 2


def test_parallel_cases_run_at_once(tmp_path, make_case, bundled_roles):
    make_case("a", acceptance={"test_a.py": ACCEPTANCE})
    make_case("b", acceptance={"test_a.py": ACCEPTANCE})
    watch = Watch()
    report = EvalRun.start(EvalOptions(suite=tmp_path / "suite"), tmp_path / "ws", parallel=2).execute(executor(2), watch)
    assert report.totals.solved == 2
    (a_start, a_end), (b_start, b_end) = watch.times["a"], watch.times["b"]
    assert a_start < b_end and b_start < a_end  # they overlapped


def test_live_cases_ask_the_configured_model_instead_of_a_script(tmp_path, make_case, bundled_roles):
    """A case without a script, and every case with --live, gets the model the factory makes (here a scripted one)."""
    make_case("no-script", acceptance={"test_a.py": ACCEPTANCE}, script=None)
    broken = honest_script()
    broken["engineer"]["T-1"] = [{"say": "I refuse."}]
    make_case("with-script", acceptance={"test_a.py": ACCEPTANCE}, script=broken)
    (tmp_path / "endpoint.yaml").write_text(yaml.safe_dump(honest_script()))
    asked: list[str] = []

    def factory(settings: object) -> ScriptedModel:
        asked.append("made")
        return ScriptedModel.from_file(tmp_path / "endpoint.yaml")

    report = EvalRun.start(EvalOptions(suite=tmp_path / "suite"), tmp_path / "ws", 1).execute(executor(model_factory=factory))
    assert {c.name: c.solved for c in report.cases} == {"no-script": True, "with-script": False}
    assert report.model == "the cases' scripts; the configured model for cases without one"
    live = EvalRun.start(EvalOptions(suite=tmp_path / "suite", live=True), tmp_path / "ws2", 1)
    assert {c.name: c.solved for c in live.execute(executor(model_factory=factory)).cases} == {"no-script": True, "with-script": True}
    assert asked


def test_case_settings_come_from_the_config_then_case_toml_then_the_eval(tmp_path, make_case):
    (tmp_path / "macrohard.toml").write_text('max_attempts = 5\nmax_parallel = 3\n[model]\nmodel = "base"\n')
    case = load_case(make_case("c", acceptance={"test_a.py": ACCEPTANCE}, settings='max_attempts = 2\napprove = []\n'))
    assert case.problem and "approve" in case.problem
    case = load_case(make_case("d", acceptance={"test_a.py": ACCEPTANCE}, settings='max_attempts = 2\n[model]\ntemperature = 0.5\n'))
    options = EvalOptions(suite=tmp_path / "suite", config=tmp_path / "macrohard.toml", max_parallel=1, model="other")
    s = case_settings(options, case, tmp_path / "ws")
    assert (s.max_attempts, s.max_parallel, s.model.model, s.model.temperature) == (2, 1, "other", 0.5)
    assert s.acceptance == case.acceptance and s.approve == [] and s.workspaces == (tmp_path / "ws").resolve()
    assert isinstance(s.workspaces, Path)


def test_a_case_may_tighten_the_sandbox_but_not_loosen_it(tmp_path, make_case):
    options = EvalOptions(suite=tmp_path / "suite")
    tight = load_case(make_case("tight", acceptance={"test_a.py": ACCEPTANCE}, settings='[sandbox]\nmemory = "512m"\n'))
    assert case_settings(options, tight, tmp_path / "ws").sandbox.memory == "512m"
    loose = load_case(make_case("loose", acceptance={"test_a.py": ACCEPTANCE}, settings="[sandbox]\nnetwork = true\n"))
    with pytest.raises(ConfigError, match=r"case loose's case.toml weakens the sandbox: network = true \(macrohard.toml has false\)"):
        case_settings(options, loose, tmp_path / "ws")


def test_the_report_names_the_model_a_case_toml_asks_for(tmp_path, make_case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MACROHARD_MODEL__MODEL", raising=False)
    accept = {"test_a.py": ACCEPTANCE}
    make_case("a", acceptance=accept, script=None, settings='[model]\nmodel = "gpt-x"\n')
    make_case("b", acceptance=accept, script=None)
    make_case("c", acceptance=accept, settings='[model]\nmodel = "gpt-y"\n')  # its script answers: gpt-y is not asked
    suite = load_suite(tmp_path / "suite")
    assert describe_model(suite, EvalOptions(suite=suite.path)) == \
        "the cases' scripts; the configured model for cases without one; gpt-x for case a"
    assert describe_model(suite, EvalOptions(suite=suite.path, live=True)) == \
        "the configured model; gpt-x for case a; gpt-y for case c"
    assert describe_model(suite, EvalOptions(suite=suite.path, model="other")) == "other"  # --model goes over case.toml
    only = load_suite(make_case("d", acceptance=accept, script=None, settings='[model]\nmodel = "gpt-x"\n', suite="one").parent)
    assert describe_model(only, EvalOptions(suite=only.path)) == "gpt-x for case d"

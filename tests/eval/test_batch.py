"""A batch: specs (files or case folders) read with clear errors, run unscored on the local executor, resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cases import ACCEPTANCE, honest_script
from fakes import LocalSandboxProvider
from macrohard.errors import ConfigError
from macrohard.eval.batch import load_specs
from macrohard.eval.executor import LocalExecutor
from macrohard.eval.results import EvalReport
from macrohard.eval.runner import EvalOptions, EvalRun
from macrohard.llm.scripted import ScriptedModel
from macrohard.workspace.git import GitWorkspace

SPEC = "# one\n\nA module one.py with one() returning 1.\n"
WRONG = "from one import one\n\n\ndef test_one_is_two():\n    assert one() == 2\n"  # would fail, were it run


def spec_file(folder: Path, name: str, text: str = SPEC) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def executor(parallel: int = 1, factory: object = None) -> LocalExecutor:
    return LocalExecutor(parallel, lambda settings: LocalSandboxProvider(), model_factory=factory)  # type: ignore[arg-type]


@pytest.fixture
def endpoint(tmp_path: Path):
    """The configured model, as a batch's spec files ask it: here a scripted one, behind the same protocol."""
    (tmp_path / "endpoint.yaml").write_text(yaml.safe_dump(honest_script()))
    return lambda settings: ScriptedModel.from_file(tmp_path / "endpoint.yaml")


def test_specs_are_files_named_after_their_stem_or_case_folders_whose_acceptance_is_left_out(tmp_path, make_case):
    file = spec_file(tmp_path / "specs", "todo-app.md")
    folder = make_case("shop", acceptance={"test_a.py": ACCEPTANCE}, settings="max_attempts = 2\n")
    suite = load_specs([file, folder])
    (a, b) = suite.cases
    assert (a.name, a.spec, a.script, a.acceptance, a.problem) == ("todo-app", file.resolve(), None, None, None)
    assert (b.name, b.spec, b.acceptance, b.tests, b.problem) == ("shop", folder / "spec.md", None, 0, None)
    assert b.script == folder / "script.yaml" and b.settings == {"max_attempts": 2}
    assert suite.path == tmp_path  # where the specs are: what the report shows for a suite
    assert load_specs([file]).path == tmp_path / "specs"


@pytest.mark.parametrize("what, message", [
    ("missing", "nowhere.md is neither a spec file nor a case folder"),
    ("empty file", "empty.md is empty"),
    ("folder without spec", "the case has no spec.md"),
    ("folder with empty spec", "its spec.md is empty"),
    ("bad stem", "a run is named after its spec file's stem"),
    ("duplicate", "two specs would make runs named 'one'"),
    ("bad script", "script"),
])
def test_a_spec_that_cannot_be_run_is_a_clear_error_before_anything_starts(tmp_path, make_case, what, message):
    paths = {
        "missing": lambda: [tmp_path / "nowhere.md"],
        "empty file": lambda: [spec_file(tmp_path, "empty.md", " \n")],
        "folder without spec": lambda: [make_case("nospec", spec=None)],
        "folder with empty spec": lambda: [make_case("blank", spec="\n")],
        "bad stem": lambda: [spec_file(tmp_path, "-x.md")],
        "duplicate": lambda: [spec_file(tmp_path / "a", "one.md"), make_case("one")],
        "bad script": lambda: [make_case("s", script="engineer: [unclosed\n")],
    }[what]()
    with pytest.raises(ConfigError) as raised:
        EvalRun.start(EvalOptions(suite=Path("."), specs=paths), tmp_path / "ws", parallel=1)
    assert message in raised.value.message
    if what == "duplicate":  # both places are named, so the user knows which to rename
        assert str(tmp_path / "a" / "one.md") in raised.value.message and str(tmp_path / "suite" / "one") in raised.value.message
    assert not (tmp_path / "ws").exists()  # nothing was started
    with pytest.raises(ConfigError, match="at least one spec"):
        load_specs([])


def test_a_batch_runs_every_spec_unscored_and_reports_what_each_run_did(tmp_path, make_case, endpoint, bundled_roles):
    honest = make_case("honest", acceptance={"test_wrong.py": WRONG})  # acceptance/ is not run: a batch does not score
    short = honest_script()
    short["engineer"]["T-1"] = [{"calls": [{"write_file": {"path": "one.py", "content": "x = 1\n"}}]}]  # never finishes
    runs_out = make_case("runs-out", script=short)
    file = spec_file(tmp_path / "specs", "plain.md")
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=[honest, runs_out, file]), tmp_path / "ws", parallel=2)
    report = run.execute(executor(2, endpoint))
    got = {c.name: c for c in report.cases}
    assert report.kind == "batch" and list(got) == ["honest", "runs-out", "plain"]
    for name in ("honest", "plain"):
        c = got[name]
        assert (c.status, c.released, c.tickets_merged, c.tickets_total, c.reason) == ("done", True, 1, 1, None), c
        assert c.model_calls > 0 and c.tokens > 0 and c.run_id == f"{run.eval_id}-{name}"
        # Released: the tag run.json names is in the product's git.
        release = json.loads((tmp_path / "ws" / c.run_id / "run.json").read_text())["release"]
        status, out = GitWorkspace(tmp_path / "ws" / c.run_id).query("rev-parse", "--verify", f"{release['tag']}^{{commit}}")
        assert status == 0 and out.strip()
    out = got["runs-out"]
    assert (out.status, out.released) == ("failed", False)
    assert "the script for engineer/T-1 ran out after 1 steps" in out.reason and "acceptance" not in out.reason
    # Nothing scored: no acceptance fields, no acceptance run, no scoring transcripts.
    assert all((c.acceptance_total, c.acceptance_passed, c.acceptance_on, c.solved) == (0, 0, None, False)
               for c in report.cases)
    assert not (run.folder / "scoring").exists()
    assert (report.totals.released, report.totals.cases, report.totals.solved) == (2, 3, 0)
    kept = EvalReport.model_validate_json((run.folder / "eval.json").read_text())
    assert kept.kind == "batch" and kept.totals.released == 2 and kept.suite == tmp_path


def test_a_stopped_batch_goes_on_as_a_batch(tmp_path, make_case, bundled_roles):
    from test_eval_runs import Watch

    a, b = make_case("a"), make_case("b")
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=[a, b]), tmp_path / "ws", parallel=1)
    first = run.execute(executor(), Watch(hold=("b",)))
    assert [(c.name, c.status, c.released) for c in first.cases] == [("a", "done", True), ("b", "queued", False)]
    transcript = tmp_path / "ws" / first.cases[0].run_id / "transcript.jsonl"
    before = transcript.read_bytes()
    with pytest.raises(ConfigError, match=f"{run.eval_id} is a batch, not an eval"):
        EvalRun.resume(run.eval_id, tmp_path / "ws", parallel=1)
    with pytest.raises(ConfigError, match="no eval 'latest'"):  # `eval resume latest` is the newest eval, never a batch
        EvalRun.resume("latest", tmp_path / "ws", parallel=1)
    again = EvalRun.resume("latest", tmp_path / "ws", parallel=1, kind="batch")
    assert again.eval_id == run.eval_id and again.options.kind == "batch"
    report = again.execute(executor())
    assert [(c.name, c.status, c.released) for c in report.cases] == [("a", "done", True), ("b", "done", True)]
    assert report.kind == "batch" and all(c.acceptance_total == 0 for c in report.cases)
    assert transcript.read_bytes() == before  # a's run had ended: reported again, not run again
    assert not (run.folder / "scoring").exists()


def test_a_resumed_batch_whose_spec_went_missing_reports_that_run_invalid(tmp_path, endpoint, bundled_roles):
    from test_eval_runs import Watch

    keep, gone = spec_file(tmp_path / "specs", "keep.md"), spec_file(tmp_path / "specs", "gone.md")
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=[keep, gone]), tmp_path / "ws", parallel=1)
    run.execute(executor(), Watch(hold=("keep", "gone")))
    gone.unlink()
    report = EvalRun.resume(run.eval_id, tmp_path / "ws", parallel=1, kind="batch").execute(executor(factory=endpoint))
    got = {c.name: c for c in report.cases}
    assert got["keep"].released and got["gone"].status == "invalid"
    assert "gone.md is neither a spec file nor a case folder" in got["gone"].reason


def test_specs_that_are_links_keep_the_names_they_were_given_to_the_end(tmp_path, make_case, endpoint, bundled_roles):
    from test_eval_runs import Watch

    real = make_case("real")
    (tmp_path / "shop").symlink_to(real)  # a folder given by a link: the run is `shop`, in every session
    (tmp_path / "blog").symlink_to(real)  # a second link to it: another run of the same spec
    spec = spec_file(tmp_path / "specs", "actual.md")
    (tmp_path / "todo.md").symlink_to(spec)  # a spec file the user names may be a link: their choice
    specs = [tmp_path / "shop", tmp_path / "blog", tmp_path / "todo.md"]
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=specs), tmp_path / "ws", parallel=1)
    first = run.execute(executor(factory=endpoint), Watch(hold=("blog",)))
    assert [(c.name, c.status) for c in first.cases] == [("shop", "done"), ("blog", "queued"), ("todo", "done")]
    report = EvalRun.resume(run.eval_id, tmp_path / "ws", parallel=1, kind="batch").execute(executor(factory=endpoint))
    assert [(c.name, c.status, c.released) for c in report.cases] == [
        ("shop", "done", True), ("blog", "done", True), ("todo", "done", True)]


@pytest.mark.parametrize("what, message, hint", [
    ("latin-1 file", "is not UTF-8 text (byte 3 cannot be decoded)",
     "save it as UTF-8, or give a Markdown (or plain text) file describing what to build"),
    ("nul byte file", "is not text: it holds a NUL byte (at byte 4)",
     "give a Markdown (or plain text) file describing what to build"),
    ("linked spec.md", "spec.md is a link; a case's files must be regular files in its folder",
     "copy the file into the case's folder"),
    ("bad script", "script", None),
    ("loosened sandbox", "case loose's case.toml weakens the sandbox: network = true (macrohard.toml has false)",
     "set it in macrohard.toml if you mean it"),
    ("bad setting", "case bad's settings: bad setting 'max_attempts'", "fix its case.toml"),
])
def test_every_problem_is_refused_up_front_with_its_own_hint(tmp_path, make_case, what, message, hint):
    def linked() -> Path:
        folder = make_case("linked")
        (tmp_path / "secret.txt").write_text("a host file\n")
        (folder / "spec.md").unlink()
        (folder / "spec.md").symlink_to(tmp_path / "secret.txt")
        return folder

    paths = {
        "latin-1 file": lambda: [_bytes(tmp_path / "a.md", b"caf\xe9\n")],
        "nul byte file": lambda: [_bytes(tmp_path / "b.md", b"# b\n\x00\n")],
        "linked spec.md": lambda: [linked()],
        "bad script": lambda: [make_case("s", script="engineer: [unclosed\n")],
        "loosened sandbox": lambda: [make_case("loose", settings="[sandbox]\nnetwork = true\n")],
        "bad setting": lambda: [make_case("bad", settings="max_attempts = 0\n")],
    }[what]()
    with pytest.raises(ConfigError) as raised:
        EvalRun.start(EvalOptions(suite=Path("."), specs=paths), tmp_path / "ws", parallel=1)
    assert message in raised.value.message
    if hint is not None:
        assert raised.value.hint == hint
    assert raised.value.hint is None or "give spec files" not in raised.value.hint  # a spec-file hint for spec files only
    assert not (tmp_path / "ws").exists()


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_run_keeps_its_time_across_sessions(tmp_path, make_case, bundled_roles):
    from test_eval_runs import Watch

    a, b = make_case("a"), make_case("b")
    run = EvalRun.start(EvalOptions(suite=Path("."), specs=[a, b]), tmp_path / "ws", parallel=1)
    first = run.execute(executor(), Watch(hold=("b",)))
    spent = first.cases[0].wall_s
    assert spent > 0
    report = EvalRun.resume(run.eval_id, tmp_path / "ws", parallel=1, kind="batch").execute(executor())
    assert report.cases[0].wall_s >= spent  # reported again, and its first session's time still counts
    again = EvalRun.resume(run.eval_id, tmp_path / "ws", parallel=1, kind="batch").execute(executor())
    assert again.cases[1].wall_s >= report.cases[1].wall_s > 0


def test_a_paused_run_says_why_once(tmp_path, make_case, bundled_roles):
    folder = make_case("tight", settings="[budget]\nmax_tokens = 1\n")
    report = EvalRun.start(EvalOptions(suite=Path("."), specs=[folder]), tmp_path / "ws", parallel=1).execute(executor())
    (c,) = report.cases
    assert c.status == "paused" and c.reason is not None
    assert c.reason.startswith("token budget reached") and "paused" not in c.reason


def test_a_case_folder_given_as_dot_is_a_run_named_after_it(tmp_path, make_case, monkeypatch):
    monkeypatch.chdir(make_case("shop"))
    suite = load_specs([Path(".")])
    assert [c.name for c in suite.cases] == ["shop"] and suite.cases[0].problem is None

"""The suite format: cases read and checked without running anything; bad cases say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from cases import ACCEPTANCE, BUNDLED
from macrohard.errors import ConfigError
from macrohard.eval.suite import load_case, load_suite, count_tests


def test_a_case_is_read_with_its_script_settings_and_test_count(make_case):
    folder = make_case("good", acceptance={"test_a.py": ACCEPTANCE}, settings='max_attempts = 2\nroles_dir = "roles"\n')
    case = load_case(folder)
    assert case.problem is None
    assert case.spec == folder / "spec.md" and case.acceptance == folder / "acceptance" and case.script == folder / "script.yaml"
    assert case.tests == 2
    assert case.settings == {"max_attempts": 2, "roles_dir": str(folder / "roles")}  # relative to the case


@pytest.mark.parametrize("what, problem", [
    ("no spec", "the case has no spec.md"),
    ("empty spec", "its spec.md is empty"),
    ("no acceptance folder", "the case has no acceptance tests (no .py file in acceptance/)"),
    ("empty acceptance folder", "the case has no acceptance tests (no .py file in acceptance/)"),
    ("no test function", "the case's acceptance/ defines no test function (def test_...)"),
    ("acceptance test that cannot be collected",
     "acceptance test acceptance/test_b.py cannot be collected: invalid syntax (line 1)"),
    ("script that is not YAML", "script"),
    ("script of the wrong shape", "is malformed"),
    ("case.toml that is not TOML", "case.toml is not valid TOML"),
    ("case.toml setting what the eval decides", "case.toml sets acceptance, workspaces, which the eval decides for every case"),
    ("bad name", "a case's folder name must be letters, digits"),
])
def test_a_case_that_cannot_be_run_says_why(make_case, what, problem):
    kwargs: dict = {"acceptance": {"test_a.py": ACCEPTANCE}}
    name = "case"
    if what == "no spec":
        kwargs["spec"] = None
    elif what == "empty spec":
        kwargs["spec"] = "  \n"
    elif what == "no acceptance folder":
        kwargs["acceptance"] = None
    elif what == "empty acceptance folder":
        kwargs["acceptance"] = {}
    elif what == "no test function":
        kwargs["acceptance"] = {"test_a.py": "def helper():\n    pass\n"}
    elif what == "acceptance test that cannot be collected":
        kwargs["acceptance"] = {"test_a.py": ACCEPTANCE, "test_b.py": "def test_x(:\n    pass\n"}
    elif what == "script that is not YAML":
        kwargs["script"] = "engineer: [unclosed\n"
    elif what == "script of the wrong shape":
        kwargs["script"] = {"engineer": {"T-1": [{"say": "x", "announce": True, "calls": [{"finish": {}}]}]}}
    elif what == "case.toml that is not TOML":
        kwargs["settings"] = "max_attempts = \n"
    elif what == "case.toml setting what the eval decides":
        kwargs["settings"] = 'acceptance = "elsewhere"\nworkspaces = "ws"\n'
    elif what == "bad name":
        name = "-dash first"
    case = load_case(make_case(name, **kwargs))
    assert case.problem is not None and problem in case.problem


def test_parametrized_tests_count_as_their_literal_values(tmp_path):
    (tmp_path / "acceptance").mkdir()
    (tmp_path / "acceptance" / "test_p.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('a', [1, 2, 3])\n@pytest.mark.parametrize('b', (4, 5))\ndef test_grid(a, b):\n    pass\n\n"
        "@pytest.mark.parametrize('a', range(10))\ndef test_computed(a):\n    pass\n\n"
        "class TestThing:\n    def test_method(self):\n        pass\n"
    )
    assert count_tests(tmp_path / "acceptance") == (6 + 1 + 1, None)


def test_a_suite_is_its_folders_in_order_and_must_have_one(make_case, tmp_path):
    make_case("b", acceptance={"test_a.py": ACCEPTANCE})
    make_case("a", spec=None, acceptance={"test_a.py": ACCEPTANCE})
    (tmp_path / "suite" / "_shared").mkdir()
    (tmp_path / "suite" / ".git").mkdir()
    suite = load_suite(tmp_path / "suite")
    assert [(c.name, c.problem is None) for c in suite.cases] == [("a", False), ("b", True)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no case"):
        load_suite(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_suite(tmp_path / "nowhere")


def test_the_bundled_suite_has_five_runnable_cases_each_with_a_script_and_a_cheat():
    suite = load_suite(BUNDLED)
    assert len(suite.cases) >= 5
    assert all(c.problem is None and c.script is not None and c.tests >= 4 for c in suite.cases)
    assert any(c.name.startswith("cheat") for c in suite.cases)


@pytest.mark.parametrize("name", ["spec.md", "script.yaml", "case.toml"])
def test_a_case_file_that_is_a_link_is_refused_not_followed(make_case, tmp_path, name):
    """A link would make a host file's text the run's spec (sent to the model, kept in the transcript)."""
    folder = make_case("linked", acceptance={"test_a.py": ACCEPTANCE}, settings="max_attempts = 2\n")
    host = tmp_path / "host-file"
    host.write_text((folder / name).read_text())  # the same text: only the link is wrong
    (folder / name).unlink()
    (folder / name).symlink_to(host)
    case = load_case(folder)
    assert case.problem == f"{name} is a link; a case's files must be regular files in its folder"
    assert case.spec is None or name != "spec.md"


def test_a_case_file_that_is_a_folder_is_refused(make_case):
    folder = make_case("odd", acceptance={"test_a.py": ACCEPTANCE}, script=None)
    (folder / "script.yaml").mkdir()
    assert load_case(folder).problem == "script.yaml is not a regular file; a case's files must be regular files in its folder"


@pytest.mark.parametrize("data, problem", [
    (b"# caf\xe9\n\nLatin-1, not UTF-8.\n", "is not UTF-8 text (byte 5 cannot be decoded)"),
    (b"# one\n\x00\x01binary\n", "is not text: it holds a NUL byte (at byte 6)"),
])
def test_a_spec_that_is_not_text_is_refused(make_case, data, problem):
    folder = make_case("binary", acceptance={"test_a.py": ACCEPTANCE})
    (folder / "spec.md").write_bytes(data)
    case = load_case(folder)
    assert case.problem is not None and problem in case.problem and case.spec is None


def test_a_case_folder_given_as_dot_is_named_after_the_folder(make_case, monkeypatch):
    folder = make_case("shop")
    monkeypatch.chdir(folder)
    assert load_case(Path("."), scored=False).name == "shop"
    (folder / "notes").mkdir()
    monkeypatch.chdir(folder / "notes")
    assert load_case(Path(".."), scored=False).name == "shop"

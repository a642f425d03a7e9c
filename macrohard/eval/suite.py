"""A suite of cases: the format on disk, read and checked without running anything.

    SUITE/
      <case>/
        spec.md        what to build (required)
        acceptance/    pytest files no role ever sees (required: at least one test function)
        script.yaml    the model's answers, to run offline on the scripted model (optional)
        case.toml      settings for this case, some keys of macrohard.toml (optional; eval/casetoml.py)

Every folder of SUITE whose name does not start with `.` or `_` is a case. A case that
cannot be run (no spec, no acceptance test, an acceptance file that does not parse, a
script or case.toml that cannot be read, one of spec.md, script.yaml or case.toml that is a
link) carries the reason in `problem`, and the suite goes on without it. Nothing in a case
is executed here: acceptance files are parsed, never imported.

A batch (eval/batch.py) reads case folders too, unscored: an acceptance/ folder there is
left out, and none is required.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from macrohard.company.records import load_spec
from macrohard.errors import ConfigError, ScriptError
from macrohard.eval.casetoml import CASE_SETTINGS, read_case_toml
from macrohard.llm.scripted import load_script

CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SPEC, ACCEPTANCE, SCRIPT = "spec.md", "acceptance", "script.yaml"


class Case(BaseModel):
    name: str
    folder: Path
    spec: Path | None = None
    acceptance: Path | None = None
    script: Path | None = None
    settings: dict[str, Any] = {}  # from case.toml, paths in it made absolute
    tests: int = 0  # tests the acceptance files define (see count_tests)
    problem: str | None = None  # why the case cannot be run; None when it can
    hint: str | None = None  # what to do about problem, for a command that refuses it up front


class Suite(BaseModel):
    path: Path
    cases: list[Case]


def _cases(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """How many tests a test function is: each `parametrize` with a literal list of values multiplies it."""
    count = 1
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute) \
                and decorator.func.attr == "parametrize" and len(decorator.args) >= 2 \
                and isinstance(decorator.args[1], ast.List | ast.Tuple):
            count *= max(1, len(decorator.args[1].elts))
    return count


def count_tests(folder: Path) -> tuple[int, str | None]:
    """(tests defined in folder's .py files, why a file cannot be collected).

    Read from the files, never run: a function is one test, or as many as the literal
    values of its `parametrize` marks. So the total does not depend on whether the
    product let the files be collected.
    """
    count = 0
    for path in sorted(folder.rglob("*.py")):
        where = path.relative_to(folder.parent)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(where))
        except SyntaxError as e:
            return count, f"acceptance test {where} cannot be collected: {e.msg} (line {e.lineno})"
        except (OSError, ValueError) as e:
            return count, f"acceptance test {where} cannot be read: {e}"
        count += sum(_cases(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                     and n.name.startswith("test"))
    return count, None


def case_name(folder: Path) -> str:
    """A case folder's name as given; `.` or `..` (a batch's SPEC) is named after the folder it stands for."""
    return folder.name if folder.name not in ("", ".", "..") else folder.resolve().name


def not_regular(path: Path) -> str | None:
    """Why one of a case's files cannot be read as its own: a link (to anywhere on the host), or not a file."""
    if path.is_symlink():
        return f"{path.name} is a link; a case's files must be regular files in its folder"
    if path.exists() and not path.is_file():
        return f"{path.name} is not a regular file; a case's files must be regular files in its folder"
    return None


def _spec_problem(spec: Path) -> tuple[str, str] | None:
    """(why the case's spec.md cannot be its spec, what to do), or None when it can."""
    odd = not_regular(spec)
    if odd is not None:
        return odd, "copy the file into the case's folder"
    if not spec.is_file():
        return f"the case has no {SPEC}", f"write what to build in {SPEC}"
    if not spec.read_bytes().strip():
        return f"its {SPEC} is empty", f"write what to build in {SPEC}"
    try:
        load_spec(spec)
    except ConfigError as e:
        return e.message, e.hint or ""
    return None


def load_case(folder: Path, scored: bool = True) -> Case:
    """The case in folder; unscored (a batch's run), any acceptance/ there is left out and none is asked for."""
    case = Case(name=case_name(folder), folder=folder.resolve())
    if not CASE_NAME.fullmatch(case.name):
        return case.model_copy(update={"problem": "a case's folder name must be letters, digits, '.', '_' or '-' "
                                                  "(at most 64), starting with a letter or digit",
                                       "hint": "rename the folder"})
    spec, acceptance, script, settings = (folder / n for n in (SPEC, ACCEPTANCE, SCRIPT, CASE_SETTINGS))
    bad_spec = _spec_problem(spec)
    if bad_spec is not None:
        return case.model_copy(update={"problem": bad_spec[0], "hint": bad_spec[1] or None})
    case = case.model_copy(update={"spec": spec.resolve()})
    if scored:
        case = _with_acceptance(case, acceptance)
        if case.problem is not None:
            return case
    for path in (script, settings):
        odd = not_regular(path)
        if odd is not None:
            return case.model_copy(update={"problem": odd, "hint": "copy the file into the case's folder"})
    try:
        if script.is_file():
            load_script(script)
            case = case.model_copy(update={"script": script.resolve()})
        if settings.is_file():
            case = case.model_copy(update={"settings": read_case_toml(settings, folder)})
    except (ScriptError, ConfigError) as e:
        return case.model_copy(update={"problem": e.message, "hint": e.hint})
    return case


def _with_acceptance(case: Case, acceptance: Path) -> Case:
    if not acceptance.is_dir() or not any(acceptance.rglob("*.py")):
        return case.model_copy(update={"problem": f"the case has no acceptance tests (no .py file in {ACCEPTANCE}/)"})
    tests, broken = count_tests(acceptance)
    case = case.model_copy(update={"acceptance": acceptance.resolve(), "tests": tests})
    if broken:
        return case.model_copy(update={"problem": broken})
    if tests == 0:
        return case.model_copy(update={"problem": f"the case's {ACCEPTANCE}/ defines no test function (def test_...)"})
    return case


def load_suite(path: Path) -> Suite:
    if not path.is_dir():
        raise ConfigError(f"suite {path} is not a folder", "give a folder with one folder per case (spec.md, acceptance/)")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not folders:
        raise ConfigError(f"suite {path} has no case", "add a folder per case, each with spec.md and acceptance/")
    return Suite(path=path.resolve(), cases=[load_case(f) for f in folders])

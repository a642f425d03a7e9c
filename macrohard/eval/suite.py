"""A suite of cases: the format on disk, read and checked without running anything.

    SUITE/
      <case>/
        spec.md        what to build (required)
        acceptance/    pytest files no role ever sees (required: at least one test function)
        script.yaml    the model's answers, to run offline on the scripted model (optional)
        case.toml      settings for this case, the keys of macrohard.toml (optional)

Every folder of SUITE whose name does not start with `.` or `_` is a case. A case that
cannot be run (no spec, no acceptance test, an acceptance file that does not parse, a
script or case.toml that cannot be read) carries the reason in `problem`, and the suite
goes on without it. Nothing in a case is executed here: acceptance files are parsed,
never imported.

A batch (eval/batch.py) reads case folders too, unscored: an acceptance/ folder there is
left out, and none is required.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from macrohard.errors import ConfigError, ScriptError
from macrohard.llm.scripted import load_script

CASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SPEC, ACCEPTANCE, SCRIPT, CASE_SETTINGS = "spec.md", "acceptance", "script.yaml", "case.toml"
# What the eval decides for every case, so a case.toml may not set it.
EVAL_OWNED = ("acceptance", "workspaces", "approve")


class Case(BaseModel):
    name: str
    folder: Path
    spec: Path | None = None
    acceptance: Path | None = None
    script: Path | None = None
    settings: dict[str, Any] = {}  # from case.toml, paths in it made absolute
    tests: int = 0  # tests the acceptance files define (see count_tests)
    problem: str | None = None  # why the case cannot be run; None when it can


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


def _case_settings(path: Path, folder: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{CASE_SETTINGS} is not valid TOML: {e}") from None
    owned = sorted(set(values) & set(EVAL_OWNED))
    if owned:
        raise ConfigError(f"{CASE_SETTINGS} sets {', '.join(owned)}, which the eval decides for every case")
    if isinstance(values.get("roles_dir"), str):
        values["roles_dir"] = str((folder / values["roles_dir"]).resolve())
    return values


def load_case(folder: Path, scored: bool = True) -> Case:
    """The case in folder; unscored (a batch's run), any acceptance/ there is left out and none is asked for."""
    case = Case(name=folder.name, folder=folder.resolve())
    if not CASE_NAME.fullmatch(folder.name):
        return case.model_copy(update={"problem": "a case's folder name must be letters, digits, '.', '_' or '-' "
                                                  "(at most 64), starting with a letter or digit"})
    spec, acceptance, script, settings = (folder / n for n in (SPEC, ACCEPTANCE, SCRIPT, CASE_SETTINGS))
    if not spec.is_file() or not spec.read_bytes().strip():
        return case.model_copy(update={"problem": f"the case has no {SPEC}" if not spec.is_file() else f"its {SPEC} is empty"})
    case = case.model_copy(update={"spec": spec.resolve()})
    if scored:
        case = _with_acceptance(case, acceptance)
        if case.problem is not None:
            return case
    try:
        if script.is_file():
            load_script(script)
            case = case.model_copy(update={"script": script.resolve()})
        if settings.is_file():
            case = case.model_copy(update={"settings": _case_settings(settings, folder)})
    except (ScriptError, ConfigError) as e:
        return case.model_copy(update={"problem": e.message})
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

"""A batch: plain runs of many specs at once, on the eval's executors, reported but not scored.

    macrohard batch specs/a.md specs/b.md cases/c/

Each SPEC is a spec file (its run is named after the file's stem: `a`, `b`) or a case folder
in the suite's format (spec.md, optional script.yaml and case.toml; the run is named after
the folder; an acceptance/ folder there is left out: a batch does not score). A batch is
kept where evals are (WORKSPACES/evals/<id>/eval.json, with `kind: "batch"`), so its resume,
its report and the viewer's pages are the eval's.
"""

from __future__ import annotations

import os
from pathlib import Path

from macrohard.company.records import load_spec as read_spec
from macrohard.errors import ConfigError
from macrohard.eval.suite import CASE_NAME, SPEC, Case, Suite, load_case


SPEC_HINT = f"give spec files (NAME.md, not empty) or folders with a {SPEC}"


def load_spec(path: Path) -> Case:
    """The run SPEC asks for; what is wrong with it (missing, empty, not text, a bad name) is in `problem`.

    A spec file the user names may be a link (their choice); a case folder's own files may not (suite.py).
    """
    if path.is_dir():
        case = load_case(path, scored=False)
        if case.problem is not None:
            return case.model_copy(update={"problem": f"{path}: {case.problem}"})
        return case
    case = Case(name=path.stem, folder=path.parent.resolve(), hint=SPEC_HINT)
    if not path.is_file():
        return case.model_copy(update={"problem": f"{path} is neither a spec file nor a case folder"})
    if not CASE_NAME.fullmatch(path.stem):
        return case.model_copy(update={"problem": f"{path}: a run is named after its spec file's stem, which must be "
                                                  "letters, digits, '.', '_' or '-' (at most 64), starting with a "
                                                  "letter or digit", "hint": "rename the file"})
    try:
        read_spec(path)
    except ConfigError as e:
        return case.model_copy(update={"problem": e.message, "hint": e.hint})
    return case.model_copy(update={"spec": path.resolve(), "hint": None})


def duplicates(cases: list[Case]) -> str | None:
    """Why two SPECs cannot be in one batch: the same run name (a batch's runs are named after them)."""
    seen: dict[str, Path] = {}
    for case in cases:
        where = case.spec or case.folder
        if case.name in seen:
            return (f"two specs would make runs named {case.name!r}: {seen[case.name]} and {where}")
        seen[case.name] = where
    return None


def load_specs(paths: list[Path], strict: bool = True) -> Suite:
    """The batch's runs, in the order given. strict (a new batch): any problem is a ConfigError before anything
    starts; else (a batch resumed) a SPEC that went missing is a run that cannot be made, reported `invalid`."""
    if not paths:
        raise ConfigError("a batch needs at least one spec", "give spec files (NAME.md) or case folders")
    cases = [load_spec(p) for p in paths]
    if strict:
        refused = [c for c in cases if c.problem is not None]
        if refused:
            hints = list(dict.fromkeys(c.hint for c in refused if c.hint))  # each once, in order
            raise ConfigError("; ".join(c.problem or "" for c in refused), "; ".join(hints) or None)
    clash = duplicates(cases)
    if clash is not None:
        raise ConfigError(clash, "rename one of them, or run them in two batches")
    return Suite(path=common_folder(paths), cases=cases)


def common_folder(paths: list[Path]) -> Path:
    """Where the specs are (`specs/` for `specs/*.md`): what a batch's report shows in place of a suite."""
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))

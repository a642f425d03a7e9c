"""Evals as the viewer shows them: read from WORKSPACES/evals/<id>/eval.json, never trusted.

An eval's folder is found by a validated id and its eval.json must be a file inside it;
what it says is shown as text (templates escape it), and a case's run is linked only
when that run folder exists in the workspaces the viewer serves. A batch (`macrohard batch`)
is kept and shown here too: its report says `kind: "batch"`, and its pages show which runs
released instead of an acceptance score it never had.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from macrohard.eval.results import EvalReport
from macrohard.viewer.runs import RUN_ID, NotFound, open_run

EVALS, EVAL_JSON = "evals", "eval.json"
REFRESH_S = 5  # how often an eval still going reloads its page


class EvalLine(BaseModel):
    """One eval in the list, or an eval.json that could not be read (with why)."""

    id: str
    report: EvalReport | None = None
    problem: str | None = None


def read_eval(workspaces: Path, eval_id: str) -> EvalLine:
    if not RUN_ID.fullmatch(eval_id) or ".." in eval_id:
        raise NotFound(f"no eval {eval_id!r}")
    root = (workspaces / EVALS).resolve()
    folder = (root / eval_id).resolve()
    path = folder / EVAL_JSON
    if folder.parent != root or not path.is_file() or path.is_symlink():
        raise NotFound(f"no eval {eval_id!r}")
    try:
        return EvalLine(id=eval_id, report=EvalReport.model_validate_json(path.read_bytes()))
    except (ValidationError, ValueError, OSError) as e:
        return EvalLine(id=eval_id, problem=f"eval.json cannot be read: {str(e).splitlines()[0]}")


def list_evals(workspaces: Path) -> list[EvalLine]:
    folder = workspaces / EVALS
    found: list[EvalLine] = []
    for child in sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []:
        try:
            found.append(read_eval(workspaces, child.name))
        except NotFound:
            continue
    return found


def runs_present(workspaces: Path, report: EvalReport) -> set[str]:
    """The case runs that can be opened here (a link to any other would 404)."""
    present: set[str] = set()
    for case in report.cases:
        if case.run_id:
            try:
                open_run(workspaces, case.run_id)
                present.add(case.run_id)
            except NotFound:
                continue
    return present


def add_eval_pages(app: FastAPI, workspaces: Path, page: Callable[..., HTMLResponse]) -> None:
    """GET /evals (every eval, newest first) and GET /evals/{id} (its cases, totals, links to their runs)."""

    @app.get("/evals", response_class=HTMLResponse)
    def evals(request: Request) -> HTMLResponse:
        lines = list_evals(workspaces)
        going = any(line.report and line.report.finished_at is None for line in lines)
        return page(request, "evals.html", lines=lines, workspaces=str(workspaces), refresh_s=REFRESH_S if going else None)

    @app.get("/evals/{eval_id}", response_class=HTMLResponse)
    def one_eval(request: Request, eval_id: str) -> HTMLResponse:
        try:
            line = read_eval(workspaces, eval_id)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        context: dict[str, Any] = {"line": line, "eval_id": eval_id, "runs": set(), "refresh_s": None}
        if line.report is not None:
            context["runs"] = runs_present(workspaces, line.report)
            context["refresh_s"] = REFRESH_S if line.report.finished_at is None else None
        return page(request, "eval.html", **context)

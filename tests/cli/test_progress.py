"""The live progress view, fed by a real parallel run's events as they happen."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from macrohard._resources import resource_dir
from macrohard.cli.progress import ProgressView
from macrohard.company.run import CompanyRun
from macrohard.config import Settings
from macrohard.transcript.log import Event

from fakes import LocalSandboxProvider

SCRIPTS = Path(__file__).parent.parent / "company" / "scripts"


def screen(view: ProgressView) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(view.render())
    return out.getvalue().splitlines()


def test_overlapping_tickets_are_shown_side_by_side_as_they_work(tmp_path):
    view = ProgressView(Console(file=io.StringIO(), width=160))
    both_working: list[list[str]] = []

    def on_event(event: Event) -> None:
        view.on_event(event)
        rows = [line for line in screen(view) if line.startswith(("T-1 ", "T-2 "))]
        if len(rows) == 2 and all(" in progress " in row for row in rows) and not both_working:
            both_working.append(rows)

    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), max_parallel=2)
    run = CompanyRun.create(SCRIPTS / "conflict_spec.md", settings, script=SCRIPTS / "conflict_script.yaml")
    assert run.execute(LocalSandboxProvider(), on_event=on_event).status == "done"

    assert both_working, "the two tickets were never shown working at the same time"
    t1, t2 = both_working[0]
    assert "hello" in t1 and "goodbye" in t2  # each row carries its own ticket's title
    final = screen(view)
    assert "finished: done" in final[0]
    rows = {line.split()[0]: line.split() for line in final[2:]}
    # ticket, title, status, attempt, step, last action (the merge commit)
    assert [r[:4] for r in rows.values()] == [["T-1", "hello", "merged", "1"], ["T-2", "goodbye", "merged", "2"]]


def test_without_a_terminal_each_step_is_one_line(tmp_path):
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=160, color_system=None))
    settings = Settings(workspaces=tmp_path / "ws", roles_dir=resource_dir("roles"), max_parallel=2)
    run = CompanyRun.create(SCRIPTS / "conflict_spec.md", settings, script=SCRIPTS / "conflict_script.yaml")
    with view:
        run.execute(LocalSandboxProvider(), on_event=view.on_event)
    lines = out.getvalue().splitlines()
    assert any(line.endswith("plan: 2 tickets") for line in lines)
    assert any("T-2 conflicts with main: app.py" in line for line in lines)
    assert sum(1 for line in lines if line.endswith("merged into main")) == 2

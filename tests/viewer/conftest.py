"""A real run folder for the viewer tests: the demo, run once by the company on the fake local sandbox."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from macrohard._resources import resource_dir
from macrohard.company.run import CompanyRun, RunRecord
from macrohard.config import Settings
from macrohard.transcript.log import Event, read_events

# The local sandbox fake lives with the company tests.
from fakes import LocalSandboxProvider  # noqa: E402

DEMO = resource_dir("demo")


class DemoRun:
    def __init__(self, workspaces: Path, run_id: str) -> None:
        self.workspaces = workspaces
        self.run_id = run_id
        self.dir = workspaces / run_id
        self.events: list[Event] = list(read_events(self.dir / "transcript.jsonl"))

    def first(self, kind: str, **where: object) -> Event:
        for e in self.events:
            if e.kind == kind and all(getattr(e, k, None) == v or e.data.get(k) == v for k, v in where.items()):
                return e
        raise LookupError(f"no {kind} event with {where}")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The bundled demo, run end to end once per session (about ten seconds)."""
    workspaces = tmp_path_factory.mktemp("viewer") / "workspaces"
    settings = Settings(workspaces=workspaces, roles_dir=resource_dir("roles"))
    run = CompanyRun.create(DEMO / "spec.md", settings, script=DEMO / "script.yaml", run_id="demo-run")
    summary = run.execute(LocalSandboxProvider())
    assert summary.status == "done"
    return DemoRun(workspaces, run.run_id)


@pytest.fixture
def copy_run(demo_run: DemoRun, tmp_path: Path) -> Callable[..., Path]:
    """Copy the demo run into a fresh workspaces folder, optionally cutting its transcript short."""
    workspaces = tmp_path / "workspaces"

    def copy(run_id: str = "demo-run", *, running: bool = False) -> Path:
        """running: cut the transcript before run.finished and mark run.json running, as mid-run."""
        target = workspaces / run_id
        shutil.copytree(demo_run.dir, target, symlinks=True)
        if running:
            lines = (target / "transcript.jsonl").read_text().splitlines(keepends=True)
            end = next(i for i, e in enumerate(demo_run.events) if e.kind == "run.finished")
            (target / "transcript.jsonl").write_text("".join(lines[:end]))
            record = RunRecord.model_validate_json((target / "run.json").read_text())
            record.status, record.finished_at, record.transcript_head = "running", None, None
            (target / "run.json").write_text(record.model_dump_json(indent=2))
        return target

    return copy


def mark_stopped(run_dir: Path, status: str = "done") -> None:
    """Write run.json the way a run does when its process stops."""
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    record.status, record.finished_at = status, time.time()
    (run_dir / "run.json").write_text(record.model_dump_json(indent=2))

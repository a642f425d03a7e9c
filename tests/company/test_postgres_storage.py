"""`[storage] url`: a run's checkpoints and record in a real PostgreSQL server, and the run resumed from them
by a process that only knows the run's id; an unreachable database is one error before anything is made."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from fakes import LocalSandboxProvider
from macrohard._resources import resource_dir
from macrohard.cli.common import resolve_run_dir
from macrohard.company.run import CompanyRun, checkpoint_values
from macrohard.company.storage import find_run
from macrohard.config import Settings
from macrohard.errors import ConfigError
from macrohard.transcript.log import read_events, verify_chain
from macrohard.workspace.git import GitWorkspace

pytestmark = pytest.mark.postgres
DEMO = resource_dir("demo")


def create(workspaces: Path, **settings: object) -> CompanyRun:
    s = Settings(workspaces=workspaces, roles_dir=resource_dir("roles"), **settings)  # type: ignore[arg-type]
    return CompanyRun.create(DEMO / "spec.md", s, script=DEMO / "script.yaml")


def outcome(run_dir: Path) -> tuple[str, Counter]:
    tree = subprocess.run(["git", "ls-tree", "-r", "main"], cwd=run_dir / "repo", capture_output=True, text=True).stdout
    return tree, Counter((c.author, c.subject) for c in GitWorkspace(run_dir).history("main"))


def test_a_run_paused_on_one_machine_resumes_from_postgres_by_its_id_alone(tmp_path: Path, postgres_url: str) -> None:
    baseline = create(tmp_path / "sqlite")
    assert baseline.execute(LocalSandboxProvider()).status == "done"

    shared = tmp_path / "shared"  # the workspaces every machine mounts
    run = create(shared, storage={"url": postgres_url}, budget={"max_tokens": 5000})
    assert run.execute(LocalSandboxProvider()).status == "paused"
    assert not run.paths.state_db.exists()  # no SQLite: the checkpoints are in the database
    import psycopg  # the `postgres` extra: the postgres_url fixture skips without it

    with psycopg.connect(postgres_url) as conn:
        status, run_dir, record = conn.execute("SELECT status, run_dir, record FROM macrohard_runs WHERE run_id = %s",
                                               (run.run_id,)).fetchone()
        checkpoints = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (run.run_id,)).fetchone()[0]
    assert (status, run_dir, record["status"]) == ("paused", str(run.paths.run_dir), "paused") and checkpoints > 0
    paused_tickets = checkpoint_values(run.paths)["tickets"]
    assert paused_tickets and any(t.status.value != "merged" for t in paused_tickets.values())

    # Another machine: its own workspaces folder knows nothing of the run; the database says where it is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ConfigError):
        resolve_run_dir(run.run_id, elsewhere)
    found = resolve_run_dir(run.run_id, elsewhere, postgres_url)
    assert found == run.paths.run_dir and find_run("no-such-run", postgres_url) is None
    done = CompanyRun.open(found, {"max_tokens": 100_000}).execute(LocalSandboxProvider())
    assert done.status == "done"
    assert outcome(found) == outcome(baseline.paths.run_dir)  # from its checkpoint: no commit lost or made twice
    assert verify_chain(found / "transcript.jsonl") is None
    assert [e.data["previous_status"] for e in read_events(found / "transcript.jsonl") if e.kind == "run.resumed"] == ["paused"]
    assert all(t.status.value == "merged" for t in checkpoint_values(run.paths)["tickets"].values())
    import psycopg  # the `postgres` extra: the postgres_url fixture skips without it

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT status FROM macrohard_runs WHERE run_id = %s", (run.run_id,)).fetchone()[0] == "done"


def test_an_unreachable_database_is_one_error_before_anything_is_made(tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (the `postgres` extra)")
    run = create(tmp_path / "ws", storage={"url": f"postgresql://nobody@/x?host={tmp_path}&port=5999"})
    with pytest.raises(ConfigError, match="cannot reach the PostgreSQL database at postgresql://nobody@/x.*No such file"):
        run.execute(LocalSandboxProvider())
    assert not run.paths.run_dir.exists()

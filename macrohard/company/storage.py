"""Where a run's state lives: the store of its checkpoints and records, chosen by `[storage] url`.

A run depends on the small RunStore protocol below, never on a database: SQLite in the
run folder by default (company/checkpoints.py), a PostgreSQL database when `[storage]
url` names one (company/postgres.py, imported only then). Either way run.json is
written in the run folder, for the audit views; the PostgreSQL store keeps the record
too, with the folder's path, so `macrohard resume RUN` on another machine finds the run
by its id. The run folder itself (its git repository and transcript) is never in the
database: to resume a run elsewhere, the workspaces folder must be on shared storage.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver

from macrohard.company.checkpoints import SqliteStore
from macrohard.company.records import RunPaths


class RunStore(Protocol):
    def check(self) -> None:
        """Raise ConfigError, in words, when the store cannot be reached (before a run starts)."""
        ...

    def saver(self) -> AbstractContextManager[BaseCheckpointSaver]:
        """LangGraph's checkpointer for the run, open for as long as the graph runs."""
        ...

    def save_record(self, run_dir: Path, record: dict[str, Any]) -> None:
        """Keep the run's record (what run.json holds, redacted), with where its folder is."""
        ...

    def find(self, run_id: str) -> Path | None:
        """The folder of a run the store knows by id."""
        ...

    def values(self, run_id: str) -> dict[str, Any]:
        """The graph state at the run's last checkpoint, read without building the graph."""
        ...


def store_for(url: str | None, paths: RunPaths) -> RunStore:
    if url is None:
        return SqliteStore(paths)
    from macrohard.company.postgres import PostgresStore

    return PostgresStore(url)


def _recorded_url(paths: RunPaths) -> str | None:
    """The storage a run was made with, from its run.json's settings."""
    if not paths.run_json.is_file():
        return None
    settings = json.loads(paths.run_json.read_text()).get("settings") or {}
    return (settings.get("storage") or {}).get("url")


def checkpoint_values(paths: RunPaths) -> dict[str, Any]:
    """The graph state at a run's last checkpoint, from whichever store the run uses."""
    return store_for(_recorded_url(paths), paths).values(paths.run_dir.name)


def find_run(run_id: str, url: str | None) -> Path | None:
    """The run's folder, when the configured store knows the run (never for SQLite: the folders are the index)."""
    return store_for(url, RunPaths(run_dir=Path(run_id))).find(run_id) if url is not None else None

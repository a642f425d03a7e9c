"""The default store of a run's state: LangGraph checkpoints in SQLite, in the run folder (state.sqlite).

The record of the run is its run.json, which the run writes itself: this store keeps
nothing else. The PostgreSQL store (company/postgres.py) is the other one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from macrohard.company.records import RunPaths

# Types the checkpointer may rebuild from msgpack; anything else is refused.
CHECKPOINT_TYPES = [
    ("macrohard.models", "Ticket"), ("macrohard.models", "TicketStatus"), ("macrohard.models", "Release"),
    ("macrohard.models", "Dispute"), ("macrohard.models", "RunSpec"), ("macrohard.models", "SmokeCheck"),
]


def serializer() -> JsonPlusSerializer:
    """The checkpoints' serde, the same for every store: only CHECKPOINT_TYPES come back as objects."""
    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


def checkpoint_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    # synchronous=NORMAL: a checkpoint is not fsynced on every step, yet it survives a
    # killed process (what resume is for). In WAL mode (which SqliteSaver would pick
    # too, but only later) the database stays consistent through a power cut, which
    # can cost at most the last few checkpoints; the steps they covered find their
    # commits, merges and tag by trailer when they run again.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SqliteStore:
    """state.sqlite in the run folder; run.json is the record."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths

    def check(self) -> None:
        pass  # a file in the run folder: nothing to reach

    @contextmanager
    def saver(self) -> Iterator[SqliteSaver]:
        conn = checkpoint_connection(self.paths.state_db)
        try:
            yield SqliteSaver(conn, serde=serializer())
        finally:
            conn.close()

    def save_record(self, run_dir: Path, record: dict[str, Any]) -> None:
        pass  # run.json, which the run writes, is all there is

    def find(self, run_id: str) -> Path | None:
        return None  # runs are found by their folders in the workspaces

    def values(self, run_id: str) -> dict[str, Any]:
        if not self.paths.state_db.is_file():
            return {}
        conn = sqlite3.connect(self.paths.state_db, check_same_thread=False)
        try:
            found = SqliteSaver(conn, serde=serializer()).get_tuple(
                {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
            return dict(found.checkpoint.get("channel_values", {})) if found else {}
        finally:
            conn.close()

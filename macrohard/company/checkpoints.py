"""LangGraph checkpoints of a run: the SQLite connection, and reading the last state without the graph."""

from __future__ import annotations

import sqlite3
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


def checkpoint_values(paths: RunPaths) -> dict[str, Any]:
    """The graph state at a run's last checkpoint, read without building the graph."""
    if not paths.state_db.is_file():
        return {}
    conn = sqlite3.connect(paths.state_db, check_same_thread=False)
    try:
        saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
        found = saver.get_tuple({"configurable": {"thread_id": paths.run_dir.name, "checkpoint_ns": ""}})
        return dict(found.checkpoint.get("channel_values", {})) if found else {}
    finally:
        conn.close()



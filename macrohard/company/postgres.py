"""The PostgreSQL store of runs' state: LangGraph's PostgresSaver, and a table of run records.

The one adapter to PostgreSQL (psycopg 3 and langgraph-checkpoint-postgres, the
`postgres` extra), used when `[storage] url` names a database. Checkpoints go in
LangGraph's own tables (made by its `setup()`, which is idempotent), serialised as the
SQLite store does, with the same allowed types. Each run's record goes in
`macrohard_runs`: its id, its folder, its status and what run.json holds, rewritten
whenever run.json is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from macrohard.company.checkpoints import serializer
from macrohard.errors import ConfigError

RECORDS = """
CREATE TABLE IF NOT EXISTS macrohard_runs (
    run_id text PRIMARY KEY,
    run_dir text NOT NULL,
    status text NOT NULL,
    record jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
SAVE = """
INSERT INTO macrohard_runs (run_id, run_dir, status, record) VALUES (%s, %s, %s, %s)
ON CONFLICT (run_id) DO UPDATE SET run_dir = EXCLUDED.run_dir, status = EXCLUDED.status, record = EXCLUDED.record,
    updated_at = now()"""


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url

    def _connect(self) -> Any:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise ConfigError("[storage] url names a PostgreSQL database, but psycopg is not installed",
                              "pip install 'macrohard[postgres]'") from None
        try:
            # autocommit and dict rows are what PostgresSaver expects of a connection it is given;
            # no prepared statements, so a pooler in transaction mode (PgBouncer) in between works.
            return psycopg.Connection.connect(self.url, autocommit=True, prepare_threshold=None, row_factory=dict_row,
                                              connect_timeout=10)
        except psycopg.OperationalError as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            # The URL as given: config.py refuses one with a password, and its user helps to tell what failed.
            raise ConfigError(f"cannot reach the PostgreSQL database at {self.url}: {why}",
                              "check [storage] url in macrohard.toml, that the server runs, and PGPASSWORD") from None

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            conn.execute(RECORDS)
            yield conn
        finally:
            conn.close()

    def check(self) -> None:
        with self._connection():
            pass

    @contextmanager
    def saver(self) -> Iterator[Any]:
        from langgraph.checkpoint.postgres import PostgresSaver

        with self._connection() as conn:
            saver = PostgresSaver(conn, serde=serializer())
            saver.setup()
            yield saver

    def save_record(self, run_dir: Path, record: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        with self._connection() as conn:
            conn.execute(SAVE, (record["run_id"], str(run_dir), record.get("status") or "running", Jsonb(record)))

    def find(self, run_id: str) -> Path | None:
        with self._connection() as conn:
            row = conn.execute("SELECT run_dir FROM macrohard_runs WHERE run_id = %s", (run_id,)).fetchone()
        return Path(row["run_dir"]) if row else None

    def values(self, run_id: str) -> dict[str, Any]:
        with self.saver() as saver:
            found = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
        return dict(found.checkpoint.get("channel_values", {})) if found else {}

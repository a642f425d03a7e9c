"""A real PostgreSQL server for tests marked postgres: Debian's package, a fresh cluster in a temporary folder.

It listens on a Unix socket only (no TCP port to collide with), trusts local connections
and skips fsync (a test's data need not survive a power cut). PostgreSQL refuses to run
as root, so as root the cluster belongs to the `postgres` user the package makes and its
programs run through runuser. Tests get it through the `postgres_url` fixture (tests/conftest.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def pg_bin(program: str) -> str | None:
    """Where Debian's package put a server program (they are not on PATH there), or None."""
    found = shutil.which(program) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True)), None)
    return found


class PostgresServer:
    def __init__(self) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        # Not under pytest's temporary folder: it is private to root, and the server's user must reach its own.
        self.folder = Path(tempfile.mkdtemp(prefix="macrohard-pg-"))
        self.data = self.folder / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, and there is no `postgres` user to run the server as") from None
            self.user = "postgres"
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", self.user, "--", *args] if self.user else list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        return f"postgresql://macrohard@/postgres?host={self.folder}&port=5432"

    def start(self) -> PostgresServer:
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "macrohard", "-E", "UTF8", "--no-sync")
        options = f"-k {self.folder} -c listen_addresses='' -p 5432 -F"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

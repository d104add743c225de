"""A throw-away PostgreSQL cluster for benchmarks: scripts/pg_temp.sh's functions, driven
from Python with the directory and port fixed so the server can be stopped and started
again on the same data (bench.chaos does)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import free_port

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"


def install_if_missing() -> None:
    """Debian's PostgreSQL server and the postgres user, as scripts/pg_temp.sh installs them."""
    subprocess.run(
        [BASH, "-c", "source scripts/pg_temp.sh && pg_temp_install"], cwd=ROOT, check=True
    )


class TempPostgres:
    """durable=False (the default) turns fsync and synchronous commits off: a benchmark of
    our code, not of the disk. durable=True keeps PostgreSQL's defaults, so every commit
    waits for its WAL to reach the disk, as in production."""

    def __init__(self, durable: bool = False):
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="cascade-bench-pg.")
        self.port = free_port()

    def _script(self, commands: str) -> None:
        env = {
            **os.environ,
            "PG_TEMP_DIR": self.dir,
            "PG_PORT": str(self.port),
            "PG_TEMP_DURABLE": "1" if self.durable else "0",
            "PG_TEMP_EXTRA": "-c shared_buffers=512MB",
        }
        subprocess.run(
            [BASH, "-c", f"source scripts/pg_temp.sh && {commands}"],
            cwd=ROOT,
            env=env,
            check=True,
        )

    def start(self) -> str:
        self._script("pg_temp_start")
        return f"postgres://cascade@127.0.0.1:{self.port}/cascade"

    def start_server(self) -> None:
        """Start the server on the existing data directory (same port, same options)."""
        self._script("pg_temp_install && pg_temp_server_start")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data: `fast` rolls back open transactions and
        disconnects every client, then writes a shutdown checkpoint, so every commit
        that was acknowledged survives (unlike `immediate`, with synchronous_commit off)."""
        self._script(f"pg_temp_install && pg_temp_server_stop {mode}")

    def restart(self, mode: str = "fast") -> None:
        self.stop_server(mode)
        self.start_server()

    def stop(self) -> None:
        self._script("pg_temp_stop")


def run_on_postgres(run, args):
    """Migrate and call run(args) on DATABASE_URL's PostgreSQL, or on a throw-away cluster
    started (and stopped) here when DATABASE_URL points elsewhere; returns run's result."""
    temp_pg = None
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        temp_pg = TempPostgres()
        os.environ["DATABASE_URL"] = temp_pg.start()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return run(args)
    finally:
        if temp_pg:
            temp_pg.stop()

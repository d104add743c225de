"""A throw-away PostgreSQL cluster for benchmarks (the same recipe as scripts/pg_temp.sh)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

from bench.common import apt_install


def install_if_missing() -> None:
    """Debian's PostgreSQL server, installed the way scripts/pg_temp.sh does when it is missing."""
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return
    apt_install("postgresql")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run([useradd, "--system", "--no-create-home", "postgres"], check=True)


class TempPostgres:
    """durable=False (the default) turns fsync and synchronous commits off: a benchmark of
    our code, not of the disk. durable=True keeps PostgreSQL's defaults, so every commit
    waits for its WAL to reach the disk, as in production."""

    def __init__(self, durable: bool = False):
        self.durable = durable
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not candidates:
            raise SystemExit(
                "PostgreSQL server not found: run `make test` once, or set DATABASE_URL."
            )
        self.bin = os.path.dirname(candidates[-1])
        self.dir = tempfile.mkdtemp(prefix="cascade-bench-pg.")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.as_owner = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]

    def start(self) -> str:
        data = os.path.join(self.dir, "data")
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bin}/initdb",
                "-D",
                data,
                "-U",
                "cascade",
                "-A",
                "trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        self.start_server()
        subprocess.run(
            [
                f"{self.bin}/createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "cascade",
                "cascade",
            ],
            check=True,
        )
        return f"postgres://cascade@127.0.0.1:{self.port}/cascade"

    def start_server(self) -> None:
        """Start the server on the existing data directory (same port, same options)."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=512MB"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bin}/pg_ctl",
                "-D",
                os.path.join(self.dir, "data"),
                "-l",
                f"{self.dir}/log",
                "-w",
                "-s",
                "start",
                "-o",
                options,
            ],
            check=True,
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data: `fast` rolls back open transactions and
        disconnects every client, then writes a shutdown checkpoint, so every commit
        that was acknowledged survives (unlike `immediate`, with synchronous_commit off)."""
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bin}/pg_ctl",
                "-D",
                os.path.join(self.dir, "data"),
                "-m",
                mode,
                "-w",
                "-s",
                "stop",
            ],
            check=True,
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop_server(mode)
        self.start_server()

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bin}/pg_ctl",
                "-D",
                os.path.join(self.dir, "data"),
                "-m",
                "immediate",
                "-s",
                "stop",
            ],
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

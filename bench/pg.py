"""A throw-away PostgreSQL cluster for benchmarks (the same recipe as scripts/pg_temp.sh)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile


class TempPostgres:
    def __init__(self):
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
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=512MB"
        )
        subprocess.run(
            [
                *self.as_owner,
                f"{self.bin}/pg_ctl",
                "-D",
                data,
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

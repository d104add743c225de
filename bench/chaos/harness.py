"""The run's machinery: a restartable Redis, the child processes (qclusters, the web server), the log line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {text}", flush=True)


class Processes:
    """Every child process the run starts (qclusters, the web server), all stopped in the end."""

    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.clusters: list[subprocess.Popen] = []
        self.web: subprocess.Popen | None = None

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        with open(os.path.join(self.log_dir, log_name), "ab") as output:
            return subprocess.Popen(
                args,
                cwd=ROOT,
                env=dict(os.environ),
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def start_cluster(self) -> subprocess.Popen:
        process = self._spawn(
            [sys.executable, "manage.py", "qcluster"], f"qcluster-{len(self.clusters) + 1}.log"
        )
        self.clusters.append(process)
        return process

    def live_clusters(self) -> list[subprocess.Popen]:
        return [process for process in self.clusters if process.poll() is None]

    @staticmethod
    def kill9(process: subprocess.Popen) -> None:
        """A crash: SIGKILL to the cluster's whole process group (sentinel, pusher, workers, monitor)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def start_web(self, port: int) -> None:
        self.web = self._spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
            "web.log",
        )
        # 403 for a wrong secret means: the server answers and reached the database.
        url = f"http://127.0.0.1:{port}/providers/webhooks/pulse/0/probe/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=2).status_code == 403:
                    return
            if self.web.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"The web server did not start; see {self.log_dir}/web.log")

    def stop_all(self) -> None:
        """SIGTERM to each main process (a qcluster stops its workers in order; signalled as
        a group it does not exit), then SIGKILL to every group for whatever is left."""
        processes = [*self.clusters, *([self.web] if self.web else [])]
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)


def db_errors() -> tuple[type[BaseException], ...]:
    import redis
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError, redis.exceptions.ConnectionError)


def close_connection() -> None:
    from django.db import connection

    with contextlib.suppress(Exception):
        connection.close()


def retrying(function, *, until: float, pause: float = 0.5):
    """Call `function` until it gets through a database or broker outage (or `until` passes)."""
    while True:
        try:
            return function()
        except db_errors():
            close_connection()
            if time.monotonic() > until:
                raise
            time.sleep(pause)

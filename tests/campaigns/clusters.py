"""Real `manage.py qcluster` processes on the test database, for the chaos and scale-out tests."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_cluster(**env_overrides: str) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=database_url(), Q_WORKERS="2", LOG_LEVEL="WARNING")
    env.update(env_overrides)
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_in_django(code: str, **env_overrides: str) -> None:
    """Run a snippet with the cluster's settings (e.g. to enqueue on the Redis broker)."""
    env = dict(os.environ, DATABASE_URL=database_url(), LOG_LEVEL="WARNING")
    env.update(env_overrides)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def stop(process: subprocess.Popen, sig=signal.SIGTERM) -> None:
    """Stop a cluster: SIGTERM to its main process (it stops its workers in order, in
    about a second; signalled as a whole group it does not exit), SIGKILL to the
    whole group for a crash, and SIGKILL for whatever is left either way."""
    if process.poll() is None:
        if sig == signal.SIGTERM:
            process.send_signal(sig)
        else:
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)

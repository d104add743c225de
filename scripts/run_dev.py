"""`make run`: migrate, seed demo data, then run the web server, a qcluster and the simulators.

Every process is started in its own process group and all of them are stopped
together on Ctrl-C, or as soon as one of them exits.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def main() -> int:
    os.chdir(ROOT)
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    manage = [PYTHON, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], check=True)
    subprocess.run([*manage, "seed_demo"], check=True)

    commands = {
        "web": [*manage, "runserver", "127.0.0.1:8000", "--noreload"],
        "worker": [*manage, "qcluster"],
        "simulators": [*manage, "run_simulators"],
    }
    processes = {
        name: subprocess.Popen(command, start_new_session=True)
        for name, command in commands.items()
    }
    print("Cascade is running on http://127.0.0.1:8000/ — Ctrl-C stops everything.", flush=True)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            exited = [name for name, process in processes.items() if process.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} exited; stopping the rest.", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())

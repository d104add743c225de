"""A throw-away Redis for benchmarks: scripts/redis_temp.sh's functions, driven from Python
with the port and directory fixed so the server can be restarted on the same port."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import free_port

ROOT = Path(__file__).resolve().parents[1]


class TempRedis:
    """A private Redis without persistence that can be restarted on the same port.

    scripts/redis_temp.sh does the work (the test suite's own recipe, Debian's
    redis-server installed when missing); this drives its functions with the port and
    directory fixed, so a restart comes back where the clusters look for it.
    """

    def __init__(self, log_dir: str):
        self.dir = tempfile.mkdtemp(prefix="cascade-chaos-redis.")
        self.port = free_port()
        self.log_dir = log_dir

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _script(self, function: str) -> None:
        subprocess.run(
            [
                shutil.which("bash") or "/bin/bash",
                "-c",
                f"source scripts/redis_temp.sh && {function}",
            ],
            cwd=ROOT,
            env={**os.environ, "REDIS_PORT": str(self.port), "REDIS_TEMP_DIR": self.dir},
            check=True,
        )

    def start(self) -> None:
        self._script("redis_temp_start")

    def stop(self) -> None:
        self._script("redis_temp_halt")  # nothing to save: --save '' and no AOF

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            shutil.copy(
                os.path.join(self.dir, "redis.log"), os.path.join(self.log_dir, "redis.log")
            )
        self._script("redis_temp_stop")

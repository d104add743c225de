"""`python -m bench.load` at CI size: every scenario runs against the real stack
(gunicorn, PostgreSQL, Redis broker, qcluster) for a few seconds, and the
figures that are about correctness, not speed, must hold: no failed answer, no
callback answered 200 and not applied, counters equal to a recount.

Speed is not asserted (see the README's table for the measured figures); a run
this short only proves the benchmark and the stack under it still work.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.load import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def test_every_load_scenario_answers_everything_and_loses_no_callback():
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "REDIS_TEST_URL")
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--seconds=3",
            "--warmup=1",
            "--connections=8",
            "--dashboard-connections=2",
            "--callbacks=20000",
            "--dashboard-recipients=2000",
            "--redirect-messages=2000",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    for name in SCENARIOS:
        assert result[f"{name}_rps"] > 0, output[-6000:]
    assert result["errors"] == 0, output[-6000:]
    assert result["callbacks_lost"] == 0, output[-6000:]
    assert result["counter_mismatches"] == 0, output[-6000:]
    assert result["db_connections_max"] > 0

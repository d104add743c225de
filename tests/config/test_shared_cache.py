"""The partner API's rate window is one count for every process, through Redis.

Two processes (as two gunicorn workers would) spend the same credential's minute at
once; the limit holds for the two together. Without CACHE_URL/REDIS_URL each process
would count for itself and let twice the limit through (the README says so).
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_TEST_URL", "")
LIMIT = 30

SPEND = """
import sys, time
from types import SimpleNamespace
from config.lcmanager.auth import over_rate
credential = SimpleNamespace(pk=int(sys.argv[1]))
while time.time() < float(sys.argv[2]):  # both start spending at the same moment
    time.sleep(0.001)
print(sum(over_rate(credential) for _ in range(%d)))
"""


def spend_in_two_processes(cache_url: str) -> list[int]:
    import time

    env = dict(os.environ, CACHE_URL=cache_url, CASCADE_API_REQUESTS_PER_MINUTE=str(LIMIT))
    env.pop("REDIS_URL", None)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    credential = str(uuid.uuid4().int % 10**9)  # a fresh window in the shared Redis
    start = str(time.time() + 3)
    code = "import django; django.setup()\n" + SPEND % LIMIT
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, credential, start],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    return [int(worker.communicate(timeout=60)[0].strip()) for worker in workers]


@pytest.mark.skipif(not REDIS_URL, reason="make test starts Redis and sets REDIS_TEST_URL")
def test_two_processes_share_one_rate_window_through_redis():
    refused = spend_in_two_processes(REDIS_URL)
    # 2 x LIMIT requests against one limit: exactly LIMIT refused between the two.
    assert sum(refused) == LIMIT, refused


def test_without_a_cache_url_each_process_counts_for_itself():
    assert spend_in_two_processes("") == [0, 0]

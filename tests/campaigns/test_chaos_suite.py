"""The chaos scenario of `python -m bench.chaos` at CI size: a Viber → SMS → email campaign
while a qcluster is killed with SIGKILL, PostgreSQL and Redis restart, the Viber
gateway answers 30% HTTP 500 and 10% timeouts for a while, and 1-pulse drops
callbacks, sends them twice and out of order. Afterwards every message is final,
no gateway accepted a key twice, the counters equal a recount and no consent
change is lost.

The bench runs as a subprocess with its own PostgreSQL and Redis (it restarts
them, so it cannot share the test database); it installs Debian's servers when
they are missing, so this test never skips.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# 2,000 recipients over a 30 s fault window; a 1 minute TTL, 5 s polls, an 8 s
# lease and callback retries after 3 and 30 s keep the whole run near 90 s.
CI_SCENARIO = [
    "--recipients=2000",
    "--window=30",
    "--seconds=300",
    "--ttl-minutes=1",
    "--poll-seconds=5",
    "--lease-seconds=8",
    "--callback-time-scale=0.05",
    "--replay=500",
]


def test_a_campaign_through_crashes_restarts_and_bad_gateways_ends_final_and_exact():
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "REDIS_TEST_URL")
    }
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "bench.chaos", *CI_SCENARIO],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["non_final"] == 0, output[-6000:]
    assert result["duplicate_sends"] == 0, output[-6000:]
    assert result["duplicate_recipients"] == 0, output[-6000:]
    assert result["counter_mismatches"] == 0, output[-6000:]
    assert result["cost_mismatches"] == 0, output[-6000:]
    assert result["lost_consent_changes"] == 0, output[-6000:]
    assert result["consent_history_breaks"] == 0, output[-6000:]
    assert result["sent_without_consent"] == 0, output[-6000:]
    # Callbacks replayed twice, newest first, change nothing and record nothing new.
    assert result["replay_changes"] == result["replay_new_events"] == 0, output[-6000:]
    # The faults really happened: the gateway failed requests, the crash left claims
    # for the sweeper, the outages made consent changes retry, callbacks were
    # dropped, doubled and delayed.
    assert result["gateway_faulted_requests"] > 0
    # Every gateway stored messages and then lost the answer: 1-pulse's and SMTP's
    # (no idempotency key) are waited for, never resent.
    assert result["faulted_after_store"]["pulse"] > 0, output[-6000:]
    assert result["faulted_after_store"]["cascade_gateway"] > 0, output[-6000:]
    assert result["faulted_after_store"]["smtp"] > 0, output[-6000:]
    assert result["lease_expired"] > 0, "the kill must land while the cluster holds claims"
    assert result["consent_changes"] > 0
    assert result["sweeper_errors"] == {} and result["consent_errors"] == {}
    callbacks = result["callbacks"]
    assert callbacks["dropped"] > 0 and callbacks["duplicated"] > 0 and callbacks["reordered"] > 0
    print(f"chaos suite: {time.monotonic() - started:.0f} s; {completed.stdout.splitlines()[-1]}")

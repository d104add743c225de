"""Chaos: one Viber → SMS → email campaign while processes, the database and the broker fail.

    python -m bench.chaos --recipients 100000

Starts its own PostgreSQL and Redis (scripts/pg_temp.sh and scripts/redis_temp.sh,
the test suite's recipes, through bench.pg and bench.redis_server; Debian's
packages are installed when missing), a
web server for the gateways' callbacks (gunicorn, CASCADE_PUBLIC_URL points at
it), two `manage.py qcluster` processes on the Redis broker, a sweeper thread
(`campaigns.services.sweep_once()` every second) and a thread that changes
consent flags of random recipients through `clients.services.change_consent`.

The campaign goes Viber (cascade gateway simulator: idempotency key, statuses
by polling) then SMS (1-pulse simulator: no idempotency key, statuses by
callback) then email (a real SMTP server, aiosmtpd: no key, no reports). The
Viber account is rate-limited (in Redis) so that the first step
is spread over `--window` seconds; these faults land inside that window, each
printed with its time:

- the cascade gateway answers 30% of requests with HTTP 500 and 10% with a
  timeout (longer than the account's own timeout), for a quarter of the
  window, and stores 20% before answering HTTP 500, for half of it;
- 1-pulse stores a request's messages and then loses its answer (HTTP 500, a
  timeout, a reset connection; 15% each) for the whole window: with no
  idempotency key these are waited for, never resent;
- the SMTP server stores 10% of the emails and then drops the connection
  instead of answering, for the whole window;
- kill -9 of one qcluster (its whole process group) while one of its workers
  has a request on the wire (both gateways answer slowly for a moment, so
  claims are in flight), and a new one started;
- Redis restarted (no persistence: the queued tasks and rate buckets are lost);
- PostgreSQL stopped (`pg_ctl -m fast`: clients cut off, open transactions
  rolled back) and started again on the same data directory and port;
- 1-pulse drops 20% of callbacks during the window (it retries after 1 and 10
  minutes, scaled by `--callback-time-scale`);
- 1-pulse delivers 30% of callbacks twice and holds 30% back so that they
  arrive after later ones (a "sent" after the final word), all run long. The
  stock simulators have no knob for either: ChaosPulseSimulator below adds
  them as two more `/_sim/config` knobs, and sends callbacks from a pool of
  threads, as a real gateway would.

Afterwards (the sweeper and the gateways settle everything, up to
`--seconds`), the run replays the last successful callbacks to the webhook
twice and in reverse order, then checks: every message final; each idempotency
key received once by each simulator that cannot deduplicate (counted on receipt,
before any dedupe: 1-pulse has no key, ours rides in the callback URL; SMTP
counts X-Cascade-Key) and accepted once by the cascade gateway; no phone or
address sent twice on a channel; nothing taken by a gateway after the client
withdrew the consent its channel needs (`sent_without_consent`, beyond a grace of
one request's timeout: consent holds as of the claim); the campaign's counters and costs equal a recount of the delivery
rows; every consent change the thread made is in the history and in the final
flags. The last line is one JSON object. Logs (qclusters, web server, Redis,
PostgreSQL) and, when a check fails, evidence.json are kept in a temp
directory whose path is printed.
"""

"""Gunicorn settings for Cascade: `gunicorn -c config/gunicorn.py config.wsgi`.

Every value comes from an environment variable (read with config.env's helpers,
so a typo stops the server instead of silently using a default); a command-line
option such as `-b 0.0.0.0:8000` still wins over this file.

The defaults were measured with `python -m bench.api` (partner API,
SendMessageProcess, PostgreSQL on the same 2-core machine, 32 keep-alive
connections).
"""

import os

from gunicorn.glogging import Logger

from config.env import env_bool, env_int, env_list, env_str
from config.logging import redact_webhook_secrets

bind = env_list("GUNICORN_BIND", ["127.0.0.1:8000"])

# The worker model, measured with bench.api on 2 cores shared with PostgreSQL:
# a request is ~6 ms of Python CPU and ~2 ms of PostgreSQL CPU, the round
# trips to a local database are short, so the cores are the limit, not waiting.
# - sync beat gthread: threads share one GIL per process and only add
#   switching (CPU per request rose from ~6 ms to 8-10 ms at 4-8 threads),
#   and a gthread worker keeps every keep-alive connection it accepted, so a
#   few busy clients can pile onto one process while the other idles (p99
#   350-600 ms against 170-200 ms for sync). A sync worker takes the next
#   connection only when free: the kernel's accept queue balances the load.
# - cores + 1 workers: one can wait on a database round trip while the others
#   keep the cores busy; 2 to 4 measured alike here (within the run-to-run
#   noise), 5 and more only added switching and database connections.
# With a database on another host (longer round trips) raise WEB_CONCURRENCY.
# sync workers belong behind a buffering proxy (nginx): without one, a slow
# client holds a worker for as long as its upload takes.
worker_class = env_str("GUNICORN_WORKER_CLASS", "sync")
workers = env_int("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1, minimum=1)
# gunicorn turns sync into gthread when threads > 1, so sync keeps one.
threads = env_int("GUNICORN_THREADS", 1 if worker_class == "sync" else 4, minimum=1)

# Each worker thread keeps its own database connection for CONN_MAX_AGE
# seconds: PostgreSQL sees up to workers * threads connections per server.

# gthread only (sync closes every connection after its answer): seconds an
# idle keep-alive connection stays open.
keepalive = env_int("GUNICORN_KEEPALIVE", 5, minimum=0)

# A worker silent this long is killed and replaced; the partner API's largest
# request (a 10,000-row list) takes well under this.
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)

# Recycle workers after this many requests (0: never), jittered so that they
# do not all restart at once; a guard against slow leaks.
max_requests = env_int("GUNICORN_MAX_REQUESTS", 0, minimum=0)
max_requests_jitter = env_int("GUNICORN_MAX_REQUESTS_JITTER", 0, minimum=0)

# The workers' heartbeat files live in memory: on a container's overlay file
# system a slow disk write can make the arbiter kill a healthy worker.
worker_tmp_dir = env_str("GUNICORN_WORKER_TMP_DIR", "/dev/shm")  # noqa: S108 - gunicorn's advice

# Access log off by default (a proxy usually writes one); "-" is stdout.
accesslog = env_str("GUNICORN_ACCESS_LOG") or None


class AccessLogWithoutSecrets(Logger):
    """Gunicorn's logger, with each webhook path's secret written as *** in the access log
    (the same rule as Django's logs: config/logging.py)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: redact_webhook_secrets(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }


logger_class = AccessLogWithoutSecrets
errorlog = "-"
loglevel = env_str("GUNICORN_LOG_LEVEL", "info")

# Import the application once in the master and fork: faster boot, shared
# memory. Off by default so that HUP reloads code.
preload_app = env_bool("GUNICORN_PRELOAD", False)

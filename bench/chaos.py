"""Chaos: one Viber → SMS → email campaign while processes, the database and the broker fail.

    python -m bench.chaos --recipients 100000

Starts its own PostgreSQL (bench.pg.TempPostgres) and Redis (as
scripts/redis_temp.sh does; Debian's packages are installed when missing), a
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

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from bench.common import apt_install, free_port, machine, print_result
from bench.pg import TempPostgres, install_if_missing
from providers.simulators.base import SimulatorConfig
from providers.simulators.cascade_gateway import CascadeGatewaySimulator
from providers.simulators.pulse import PulseSimulator
from providers.simulators.smtp import SmtpSimulator

ROOT = Path(__file__).resolve().parents[1]
OPEN_MESSAGE_STATUSES = ["pending", "in_progress"]
OPEN_DELIVERY_STATUSES = ["pending", "queued", "submitting", "sent", "unknown"]
# Clients start with allow_sms only (see create_campaign).
INITIAL_FLAGS = {
    "allow_sms": True,
    "allow_email": True,
    "allow_push": False,
    "allow_email_online_cheque": False,
}
CONSENT_FLAG_WEIGHTS = {"allow_sms": 7, "allow_email": 2, "allow_push": 1}
CALLBACK_SECRET = "chaos-callback-secret"  # noqa: S105 - a throw-away database's webhook

STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f}s] {text}", flush=True)


# ---------------------------------------------------------------- infrastructure


class TempRedis:
    """A private Redis without persistence that can be restarted on the same port.

    The recipe of scripts/redis_temp.sh, run in the foreground (its own session) so
    the bench holds its pid; Debian's redis-server is installed when missing.
    """

    def __init__(self, log_dir: str):
        if not shutil.which("redis-server"):
            apt_install("redis-server")
        self.server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = tempfile.mkdtemp(prefix="cascade-chaos-redis.")
        self.port = free_port()
        self.log = os.path.join(log_dir, "redis.log")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                self.server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--logfile",
                self.log,
            ],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Redis did not start; see {self.log}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # nothing to save: --save '' and no AOF
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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


# ---------------------------------------------------------------- the 1-pulse simulator, nastier


@dataclass
class ChaosConfig(SimulatorConfig):
    # Not knobs of the stock simulators: a share of callbacks that arrive a second
    # time (0-1 s after the first), and a share held back `callback_reorder_delay`
    # seconds so that they arrive after later ones (a "sent" after the final word).
    callback_duplicate_rate: float = 0.0
    callback_reorder_rate: float = 0.0
    callback_reorder_delay: float = 3.0


class ChaosPulseSimulator(PulseSimulator):
    """1-pulse with callbacks sent twice and out of order, from a pool of sender threads.

    1-pulse has no idempotency key, so the stock simulator records none and its
    duplicate_keys stays empty whatever we send. Our key rides in the callback URL
    (`key=`); this simulator records it as the message's key purely for counting, so
    /_sim/stats duplicate_keys shows a message we sent twice. Nothing else reads it.
    """

    name = "pulse"

    def __init__(self, *args, senders: int = 8, **kwargs):
        self._local = threading.local()
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="pulse-callback")

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.callbacks_duplicated = 0  # second deliveries made
            self.callbacks_reordered = 0  # held-back deliveries made
            self.outstanding = 0  # callbacks handed to the pool and not finished
            self.delivered_urls: list[str] = []  # first deliveries that got HTTP 200

    def accept(self, *, key: str, callback_url: str = "", **fields):
        if not key and callback_url:
            key = parse_qs(urlsplit(callback_url).query).get("key", [""])[0]
        return super().accept(key=key, callback_url=callback_url, **fields)

    def roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def backlog(self) -> int:
        """Callbacks not sent yet: in the pool's queue, or scheduled (held back, retries)."""
        with self.lock:
            return self.outstanding + len(self._callbacks)

    def submit(self, *args, kind: str = "first") -> None:
        with self.lock:
            self.outstanding += 1
        self.pool.submit(self._post, *args, kind)

    def deliver_callback(
        self, method: str, url: str, retry_delays: list[float], attempt: int = 0, **kwargs
    ) -> None:
        config = self.config
        if attempt == 0 and self.roll() < config.callback_reorder_rate:
            self.schedule(
                time.time() + config.callback_reorder_delay,
                lambda: self.submit(method, url, retry_delays, attempt, kwargs, kind="late"),
            )
            return
        self.submit(method, url, retry_delays, attempt, kwargs)

    def _post(self, method, url, retry_delays, attempt, kwargs, kind: str) -> None:
        try:
            self._post_once(method, url, retry_delays, attempt, kwargs, kind)
        finally:
            with self.lock:
                self.outstanding -= 1

    def _post_once(self, method, url, retry_delays, attempt, kwargs, kind: str) -> None:
        config = self.config
        duplicate = kind == "duplicate"
        if not duplicate and self.roll() < config.callback_drop_rate:
            ok = False
            with self.lock:
                self.callbacks_dropped += 1
        else:
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = requests.Session()
            try:
                ok = session.request(method, url, timeout=10, **kwargs).status_code == 200
            except requests.RequestException:
                ok = False
            with self.lock:
                if duplicate:
                    self.callbacks_duplicated += 1
                elif ok:
                    self.callbacks_sent += 1
                    self.delivered_urls.append(url)
                else:
                    self.callbacks_failed += 1
                if kind == "late":
                    self.callbacks_reordered += 1
        if duplicate:
            return
        if ok and self.roll() < config.callback_duplicate_rate:
            self.schedule(
                time.time() + self.roll(),
                lambda: self.submit(method, url, retry_delays, attempt, kwargs, kind="duplicate"),
            )
        if not ok and attempt < len(retry_delays):
            delay = retry_delays[attempt] * config.callback_time_scale
            self.schedule(
                time.time() + delay,
                lambda: self.submit(method, url, retry_delays, attempt + 1, kwargs),
            )

    def stats(self) -> dict:
        stats = super().stats()
        with self.lock:
            stats["callbacks_duplicated"] = self.callbacks_duplicated
            stats["callbacks_reordered"] = self.callbacks_reordered
            stats["callbacks_backlog"] = self.outstanding + len(self._callbacks)
        return stats

    def stop(self) -> None:
        super().stop()
        # Callbacks still on the wire finish; none starts after this returns.
        self.pool.shutdown(wait=True, cancel_futures=True)


class CountingGatewaySimulator(CascadeGatewaySimulator):
    """The cascade gateway, counting the resubmissions it answered from an earlier message.

    It never accepts a client_id_message twice, so its duplicate_keys stays empty by
    construction; this count shows how often the engine leaned on that (a claim taken
    back after a crash and resubmitted under the same key).
    """

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.deduplicated = 0

    def accept_phone(self, login, fields, channels, phone, client_id, flavour):
        with self.lock:
            if client_id and (login, client_id) in self.client_ids:
                self.deduplicated += 1
            return super().accept_phone(login, fields, channels, phone, client_id, flavour)

    def stats(self) -> dict:
        stats = super().stats()
        with self.lock:
            stats["deduplicated"] = self.deduplicated
        return stats


def quiet_disconnects(sim):
    """A client that gave up (our 5 s timeout against the simulator's 8 s) makes the
    simulator's answer hit a closed socket; socketserver would print that traceback."""
    report = sim.server.handle_error

    def handle_error(request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, client_address)

    sim.server.handle_error = handle_error
    return sim


def track_requests(sim):
    """Keep `sim.busy_ports`: the client ports of the requests it is answering right now."""
    busy: Counter = Counter()
    lock = threading.Lock()
    base = sim.server.RequestHandlerClass

    class Tracking(base):
        def _serve(self):
            port = self.client_address[1]
            with lock:
                busy[port] += 1
            try:
                return super()._serve()
            finally:
                with lock:
                    busy[port] -= 1

        do_GET = do_POST = do_PUT = _serve

    def busy_ports() -> set[int]:
        with lock:
            return {port for port, count in busy.items() if count}

    sim.server.RequestHandlerClass = Tracking
    sim.busy_ports = busy_ports
    return sim


def group_ports(group_id: int) -> set[int]:
    """Local ports of the TCP sockets that the processes of one process group hold (Linux /proc)."""
    inodes = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(name)) != group_id:
                continue
            for fd in os.listdir(f"/proc/{name}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{name}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sim_config(sim, **changes) -> None:
    """Turn a simulator's knobs over HTTP, as an operator of the test would."""
    response = requests.post(f"{sim.url}/_sim/config", json=changes, timeout=10)
    response.raise_for_status()


def sim_stats(sim) -> dict:
    return requests.get(f"{sim.url}/_sim/stats", timeout=30).json()


# ---------------------------------------------------------------- threads beside the cluster


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


class Sweeper(threading.Thread):
    """sweep_once() every second, as the cascade-sweeper schedule does, through outages."""

    def __init__(self, error_log: str):
        super().__init__(name="sweeper", daemon=True)
        self.halt = threading.Event()
        self.error_log = error_log
        self.passes = 0
        self.outages = 0  # passes cut short by the database or Redis being away
        self.errors: Counter = Counter()  # anything else, by type: a finding

    def run(self) -> None:
        from campaigns import services

        expected = db_errors()
        while not self.halt.is_set():
            try:
                services.sweep_once()
                self.passes += 1
            except expected:
                self.outages += 1
                close_connection()
            except Exception as error:
                self.errors[type(error).__name__] += 1
                with open(self.error_log, "a") as output:
                    output.write(traceback.format_exc() + "\n")
                close_connection()
            self.halt.wait(1)
        close_connection()


class ConsentStream(threading.Thread):
    """Consent changes of random recipients through change_consent, remembered one by one.

    A change that failed because the database was away is retried with the same
    values and reason until it goes through: it counts once, whether the first try
    had committed (the retry then changes nothing and writes no row) or not.
    """

    def __init__(self, client_ids: list[int], rate: float, seed: int):
        super().__init__(name="consent", daemon=True)
        self.client_ids = client_ids
        self.rate = rate
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.flags: dict[int, dict[str, bool]] = defaultdict(lambda: dict(INITIAL_FLAGS))
        self.made: list[tuple[str, int, str, bool]] = []  # (reason, client id, flag, value)
        self.retries = 0
        self.abandoned: list[tuple[str, int, str, bool]] = []
        self.errors: Counter = Counter()

    def run(self) -> None:
        from clients.services import change_consent

        flags, weights = list(CONSENT_FLAG_WEIGHTS), list(CONSENT_FLAG_WEIGHTS.values())
        expected = db_errors()
        number = 0
        while not self.halt.is_set():
            client_id = self.rng.choice(self.client_ids)
            flag = self.rng.choices(flags, weights)[0]
            value = not self.flags[client_id][flag]
            number += 1
            change = (f"chaos:{number}", client_id, flag, value)
            give_up = time.monotonic() + 120
            while True:
                try:
                    change_consent(
                        client_id=client_id, flags={flag: value}, source="admin", reason=change[0]
                    )
                    self.flags[client_id][flag] = value
                    self.made.append(change)
                    break
                except expected:
                    self.retries += 1
                    close_connection()
                    if time.monotonic() > give_up:
                        self.abandoned.append(change)
                        break
                    time.sleep(0.2)
                except Exception as error:
                    self.errors[type(error).__name__] += 1
                    self.abandoned.append(change)
                    close_connection()
                    break
            self.halt.wait(1 / self.rate)
        close_connection()


# ---------------------------------------------------------------- the run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument(
        "--window",
        type=float,
        default=60,
        help="seconds the first step is spread over (the Viber account's rate limit); "
        "the faults land in it",
    )
    parser.add_argument(
        "--seconds", type=float, default=1200, help="budget for everything to settle afterwards"
    )
    parser.add_argument("--ttl-minutes", type=int, default=5, help="the campaign's step TTL")
    parser.add_argument("--lease-seconds", type=int, default=30, help="CASCADE_CLAIM_LEASE_SECONDS")
    parser.add_argument(
        "--poll-seconds",
        type=int,
        default=60,
        help="the sweeper's poll interval; below 60 the gateway's once-a-minute rule is "
        "switched off and the sweeper thread is the only sweeper",
    )
    parser.add_argument("--callback-time-scale", type=float, default=0.1)
    parser.add_argument("--consent-rate", type=float, default=20, help="changes per second")
    parser.add_argument("--pg-down-seconds", type=float, default=3)
    parser.add_argument("--redis-down-seconds", type=float, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-pg-restart", action="store_true")
    parser.add_argument("--skip-redis-restart", action="store_true")
    parser.add_argument(
        "--replay", type=int, default=5000, help="callbacks replayed (twice) at the end"
    )
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the log directory after a clean run too"
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    log_dir = tempfile.mkdtemp(prefix="cascade-chaos-logs.")

    def terminate(signum, _frame):
        raise SystemExit(128 + signum)  # run the finally: below, whoever stops us

    signal.signal(signal.SIGTERM, terminate)
    install_if_missing()
    pg = TempPostgres()
    redis_server = None
    processes = Processes(log_dir)
    sims = []
    result = None
    try:
        redis_server = TempRedis(log_dir)
        database_url = pg.start()
        redis_server.start()
        web_port = free_port()
        # The bench always uses its own servers: it restarts them.
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=database_url,
            REDIS_URL=redis_server.url,
            CASCADE_PUBLIC_URL=f"http://127.0.0.1:{web_port}",
            CASCADE_CLAIM_LEASE_SECONDS=str(args.lease_seconds),
            Q_WORKERS="2",
            LOG_LEVEL="WARNING",
            DEBUG="0",
            SECRET_KEY="bench-chaos-throw-away-key",  # noqa: S106 - a throw-away database
            SECURE_SSL_REDIRECT="0",
            SESSION_COOKIE_SECURE="0",
            CSRF_COOKIE_SECURE="0",
            STATIC_MANIFEST="0",
        )
        import django

        django.setup()
        # This process's own warnings (a failed poll, a refused request) go to a file:
        # the output stays the bench's lines.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        file_handler = logging.FileHandler(os.path.join(log_dir, "bench.log"))
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        root.addHandler(file_handler)
        root.setLevel(logging.WARNING)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        result = run(args, processes, sims, web_port, log_dir, pg, redis_server)
    finally:
        for sim in sims:
            with contextlib.suppress(Exception):
                sim.stop()
        processes.stop_all()
        if redis_server is not None:
            redis_server.cleanup()
        with contextlib.suppress(OSError):
            shutil.copy(os.path.join(pg.dir, "log"), os.path.join(log_dir, "postgresql.log"))
        with contextlib.suppress(Exception):
            close_connection()
        pg.stop()
        if result is not None and not failed(result) and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"logs and evidence kept in {log_dir}", flush=True)
    print_result(result)


CHECKS = (
    "non_final",
    "duplicate_sends",
    "duplicate_recipients",
    "sent_without_consent",
    "counter_mismatches",
    "cost_mismatches",
    "lost_consent_changes",
    "consent_history_breaks",
    "replay_changes",
    "replay_new_events",
)


def failed(result: dict) -> bool:
    checks = (*CHECKS, "sweeper_errors", "consent_errors")
    return any(result.get(name) for name in checks)


def create_campaign(args, gateway, pulse, smtp):
    from django.db import connection

    from campaigns.models import Campaign, MessageTemplate
    from clients.models import Operator
    from providers.models import ChannelRoute, ProviderAccount

    operator = Operator.objects.create(code="chaos", name="Chaos")
    # Spread the first step over the window: the limit lives in Redis (ratelimit.py).
    # Requests of a fifth of a second's worth, so that even a small run makes a few
    # requests a second for the faults to meet.
    rate = max(10, math.ceil(args.recipients / args.window))
    fast_polls = args.poll_seconds < 60
    viber = ProviderAccount.objects.create(
        operator=operator,
        name="Cascade gateway (Viber)",
        backend="cascade_gateway",
        base_url=gateway.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber"],
        options={"flavour": "json", "identical_request_seconds": 0 if fast_polls else 60},
        sender_names={"viber": "Chaos"},
        max_batch=min(200, max(10, rate // 5)),
        rate_limit_per_second=rate,
        timeout_seconds=5,
    )
    sms = ProviderAccount.objects.create(
        operator=operator,
        name="1-pulse (SMS)",
        backend="pulse",
        base_url=f"{pulse.url}/api/v1",
        credentials={"token": "test-token"},
        channels=["sms"],
        sender_names={"sms": "Chaos"},
        # Lists of 500 would carry a small run's SMS traffic in a handful of requests,
        # too few for the faults to meet.
        max_batch=min(500, max(10, rate // 5)),
        timeout_seconds=5,
        callback_secrets=[CALLBACK_SECRET],
    )
    mail = ProviderAccount.objects.create(
        operator=operator,
        name="SMTP (email)",
        backend="smtp",
        credentials={"host": "127.0.0.1", "port": smtp.port, "from_email": "news@chaos.test"},
        channels=["email"],
        max_batch=50,
        # One email per round trip: a short timeout lets a claim carry a few (claim_size).
        timeout_seconds=2,
    )
    ChannelRoute.objects.create(operator=operator, channel="viber", account=viber, priority=1)
    ChannelRoute.objects.create(operator=operator, channel="sms", account=sms, priority=1)
    ChannelRoute.objects.create(operator=operator, channel="email", account=mail, priority=1)
    template = MessageTemplate.objects.create(
        operator=operator,
        name="Chaos",
        title="The weekend sale",
        text="Hi {{ first_name }}, the weekend sale is on",
        sms_text="Hi {{ first_name }}, sale this weekend",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name, middle_name, push_tokens,"
            " viber_id, vk_id, allow_sms, allow_email, allow_push, allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(79000000000 + g AS VARCHAR), 'client' || g || '@chaos.test', 'Client' || g,"
            " '', '', '[]', '', '', TRUE, TRUE,"
            " FALSE, FALSE, now(), now() FROM generate_series(1, %s) g",
            [operator.pk, args.recipients],
        )
    campaign = Campaign.objects.create(
        operator=operator,
        name="Chaos: Viber, then SMS, then email",
        template=template,
        channels=["viber", "sms", "email"],
        ttl_minutes=args.ttl_minutes,
    )
    return operator, campaign, rate


def run(
    args, processes: Processes, sims: list, web_port: int, log_dir: str, pg, redis_server
) -> dict:
    from django.db import connection
    from django_q.brokers import get_broker
    from django_q.models import Schedule

    from campaigns import services
    from campaigns.models import Campaign, Delivery, Message
    from clients.models import Client

    n = args.recipients
    log(
        f"bench.chaos on {machine()}: {n} recipients, 2 qclusters of 2 workers (Redis broker), "
        f"PostgreSQL {connection.pg_version // 10000}, window {args.window:g} s, TTL {args.ttl_minutes} min, "
        f"lease {args.lease_seconds} s, polls every {args.poll_seconds} s; logs in {log_dir}"
    )
    fast_polls = args.poll_seconds < 60
    gateway = CountingGatewaySimulator(
        config=SimulatorConfig(
            delivery_delay=0.5,
            outcome_mix={"delivered": 0.55, "read": 0.2, "undeliverable": 0.25},
            timeout_seconds=8,  # longer than the account's 5 s: the backend times out
            seed=args.seed,
        ),
        identical_window=0 if fast_polls else 60,
    ).start()
    sims.append(track_requests(quiet_disconnects(gateway)))
    pulse = ChaosPulseSimulator(
        config=ChaosConfig(
            delivery_delay=1.0,
            outcome_mix={"delivered": 0.85, "undeliverable": 0.1, "expired": 0.05},
            callback_time_scale=args.callback_time_scale,
            seed=args.seed + 1,
        ),
    ).start()
    sims.append(track_requests(quiet_disconnects(pulse)))
    # A real SMTP server; it takes the steps both phone channels failed.
    smtp = SmtpSimulator(seed=args.seed + 3).start()
    sims.append(smtp)  # stopped with the others whatever happens
    web_sims = [gateway, pulse]
    if fast_polls:
        services.POLL_INTERVAL_SECONDS = args.poll_seconds
        # The cluster's own sweeper schedule would poll at the production 60 s.
        Schedule.objects.filter(name="cascade-sweeper").delete()

    operator, campaign, rate = create_campaign(args, gateway, pulse, smtp)
    client_ids = list(Client.objects.filter(operator=operator).values_list("pk", flat=True))
    log(
        f"{n} clients; Viber → SMS → email through the cascade gateway ({gateway.url}), 1-pulse "
        f"({pulse.url}, callbacks to {os.environ['CASCADE_PUBLIC_URL']}) and SMTP "
        f"(127.0.0.1:{smtp.port}); Viber limited to {rate}/s"
    )
    processes.start_web(web_port)
    processes.start_cluster()
    processes.start_cluster()
    time.sleep(4)  # both clusters up and idle before the launch, as in production

    sweeper = Sweeper(os.path.join(log_dir, "sweeper-errors.log"))
    consent = ConsentStream(client_ids, args.consent_rate, args.seed + 2)
    sim_config(pulse, callback_duplicate_rate=0.3, callback_reorder_rate=0.3)
    services.launch(campaign_id=campaign.pk)
    launched = time.monotonic()
    log("launched (fan-out runs in a qcluster task); callbacks: 30% twice, 30% held back 3 s")
    sweeper.start()
    consent.start()

    def fanned_out():
        return Campaign.objects.filter(pk=campaign.pk, fanned_out_at__isnull=False).exists()

    while not retrying(fanned_out, until=time.monotonic() + 60):
        if time.monotonic() - launched > 300:
            raise RuntimeError("the campaign was not fanned out within 5 minutes")
        time.sleep(0.2)
    log(f"fanned out after {time.monotonic() - launched:.1f} s")

    faults = fault_schedule(args, processes, pg, redis_server, gateway, pulse, smtp)
    window_start = time.monotonic()

    def open_messages() -> int:
        return Message.objects.filter(campaign=campaign, status__in=OPEN_MESSAGE_STATUSES).count()

    def sms_queued() -> int:
        return Delivery.objects.filter(campaign=campaign, channel="sms", status="queued").count()

    def progress() -> None:
        gateway_stats, pulse_stats = gateway.stats(), pulse.stats()
        try:
            waiting = retrying(open_messages, until=time.monotonic())
            queued = retrying(sms_queued, until=time.monotonic())
        except db_errors():
            waiting = queued = "?"
        try:
            tasks = get_broker().queue_size()
        except db_errors():
            tasks = "?"
        log(
            f"gateway accepted {gateway_stats['accepted']} ({gateway_stats['faulted_requests']} faulted requests) · "
            f"SMS steps queued {queued} · broker tasks {tasks} · "
            f"1-pulse accepted {pulse_stats['accepted']}, callbacks ok {pulse_stats['callbacks_sent']} "
            f"failed {pulse_stats['callbacks_failed']} dropped {pulse_stats['callbacks_dropped']} "
            f"twice {pulse_stats['callbacks_duplicated']} late {pulse_stats['callbacks_reordered']} · "
            f"messages open {waiting} · consent changes {len(consent.made)} "
            f"({consent.retries} retried) · live clusters {len(processes.live_clusters())}"
        )

    next_progress = time.monotonic()
    while faults:
        at, name, action = faults[0]
        now = time.monotonic() - window_start
        if now >= at:
            faults.pop(0)
            log(f"FAULT {name}")
            action()
            continue
        if time.monotonic() >= next_progress:
            progress()
            next_progress = time.monotonic() + 5
        time.sleep(min(0.2, at - now))
    # The consent stream runs through the whole window, outages included.
    consent.halt.set()
    consent.join(150)
    log(f"consent stream stopped: {len(consent.made)} changes, {consent.retries} retries")

    settle_deadline = time.monotonic() + args.seconds
    waiting = None
    while time.monotonic() < settle_deadline:
        try:
            waiting = retrying(open_messages, until=time.monotonic() + 30)
        except db_errors():
            waiting = None
        if waiting == 0:
            break
        if time.monotonic() >= next_progress:
            progress()
            next_progress = time.monotonic() + 10
        time.sleep(1)
    settled_s = time.monotonic() - launched
    log(f"all messages final after {settled_s:.1f} s" if waiting == 0 else "deadline passed")
    progress()
    # The second and held-back callbacks still queued must arrive too (and change nothing).
    drain_deadline = min(settle_deadline, time.monotonic() + 600)
    while pulse.backlog() and time.monotonic() < drain_deadline:
        if time.monotonic() >= next_progress:
            log(f"1-pulse callbacks still to send: {pulse.backlog()}")
            next_progress = time.monotonic() + 10
        time.sleep(0.5)
    log(f"1-pulse callbacks still to send: {pulse.backlog()}")

    sweeper.halt.set()
    sweeper.join(60)
    stats = {sim.name: sim_stats(sim) for sim in web_sims}  # over HTTP, as the README shows
    stats[smtp.name] = smtp.stats()
    duplicate_recipients = {sim.name: duplicate_phones(sim) for sim in web_sims}
    duplicate_recipients[smtp.name] = duplicate_addresses(smtp)
    sends = [send for sim in web_sims for send in accepted_sends(sim)] + received_mails(smtp)
    for sim in sims:
        sim.stop()  # no late callback may land during the replay below
    replay = replay_callbacks(campaign.pk, pulse.delivered_urls, args.replay)
    processes.stop_all()  # nothing moves any more: the checks below see a still picture
    close_connection()

    result = check(
        args,
        campaign=campaign,
        operator=operator,
        consent=consent,
        stats=stats,
        duplicate_recipients=duplicate_recipients,
        sends=sends,
        replay=replay,
        log_dir=log_dir,
    )
    result.update(
        settle_s=round(settled_s, 1) if waiting == 0 else None,
        elapsed_s=round(time.monotonic() - STARTED, 1),
        sweeper_passes=sweeper.passes,
        sweeper_outages=sweeper.outages,
        sweeper_errors=dict(sweeper.errors),
        consent_errors=dict(consent.errors),
    )
    if sweeper.errors:
        log(f"sweeper errors other than outages: {dict(sweeper.errors)} (see sweeper-errors.log)")
    if consent.errors:
        log(f"consent changes that failed other than by an outage: {dict(consent.errors)}")
    return result


def fault_schedule(args, processes: Processes, pg, redis_server, gateway, pulse, smtp) -> list:
    """(seconds into the window, name, action), in order."""
    window = args.window

    def kill_a_cluster():
        from campaigns.models import Delivery

        # Aim: a cluster with a request on the wire (so it holds claims), waiting a
        # few seconds at most for one; the gateways are slow just now.
        deadline = time.monotonic() + 10
        victim, on_the_wire = None, 0
        while victim is None and time.monotonic() < deadline:
            busy = gateway.busy_ports() | pulse.busy_ports()
            for cluster in processes.live_clusters():
                on_the_wire = len(busy & group_ports(cluster.pid))
                if on_the_wire:
                    victim = cluster
                    break
            else:
                time.sleep(0.05)
        if victim is None:
            victim = random.Random(args.seed).choice(processes.live_clusters())
        claimed = retrying(
            Delivery.objects.filter(status="submitting").count, until=time.monotonic() + 30
        )
        Processes.kill9(victim)
        replacement = processes.start_cluster()
        log(
            f"  killed qcluster pid {victim.pid} (its whole process group) with {on_the_wire} "
            f"requests on the wire ({claimed} deliveries submitting in all); "
            f"started pid {replacement.pid}"
        )

    def restart_postgres():
        started = time.monotonic()
        pg.stop_server("fast")
        time.sleep(args.pg_down_seconds)
        pg.start_server()
        log(f"  PostgreSQL back after {time.monotonic() - started:.1f} s")

    def restart_redis():
        started = time.monotonic()
        redis_server.stop()
        time.sleep(args.redis_down_seconds)
        redis_server.start()
        log(f"  Redis back after {time.monotonic() - started:.1f} s (queue and buckets empty)")

    def slow(latency: float):
        return lambda: [sim_config(sim, latency=latency) for sim in (gateway, pulse)]

    # The gateway's bad spell first and alone, so that it meets full traffic; the
    # crash during a slow spell, so that claims are on the wire; the restarts last,
    # when SMS callbacks come in too.
    faults = [
        (
            0.05 * window,
            "1-pulse drops 20% of callbacks",
            lambda: sim_config(pulse, callback_drop_rate=0.2),
        ),
        (
            0.06 * window,
            "1-pulse stores, then loses 45% of its answers (500, timeout, reset)",
            lambda: sim_config(
                pulse,
                error_after_store_rate=0.15,
                timeout_after_store_rate=0.15,
                drop_after_store_rate=0.15,
            ),
        ),
        (
            0.08 * window,
            # Emails come late (steps both phone channels failed): the fault lasts the window.
            "SMTP server stores, then drops the connection, for 10% of the emails",
            lambda: setattr(smtp, "reset_rate", 0.1),
        ),
        (
            0.10 * window,
            "cascade gateway answers 30% HTTP 500 and 10% timeouts, 20% 500 after storing",
            lambda: sim_config(
                gateway, error_rate=0.3, timeout_rate=0.1, error_after_store_rate=0.2
            ),
        ),
        (
            0.35 * window,
            "cascade gateway answers every request again (still 20% 500 after storing)",
            lambda: sim_config(gateway, error_rate=0.0, timeout_rate=0.0),
        ),
        (
            # Longer than the rest of its spell, so that even a small run meets it.
            0.60 * window,
            "cascade gateway healthy again",
            lambda: sim_config(gateway, error_after_store_rate=0.0),
        ),
        (
            # To the end: 1-pulse's traffic (SMS steps) comes later than the first step's.
            window,
            "1-pulse answers every request again",
            lambda: sim_config(
                pulse,
                error_after_store_rate=0.0,
                timeout_after_store_rate=0.0,
                drop_after_store_rate=0.0,
            ),
        ),
    ]
    if not args.skip_kill:
        faults += [
            (0.38 * window, "both gateways slow: 1 s per answer", slow(1.0)),
            (0.40 * window, "kill -9 one qcluster, start a new one", kill_a_cluster),
            (0.48 * window, "both gateways fast again", slow(0.0)),
        ]
    if not args.skip_redis_restart:
        faults.append((0.60 * window, "restart Redis", restart_redis))
    if not args.skip_pg_restart:
        faults.append((0.80 * window, "restart PostgreSQL (fast stop, start)", restart_postgres))
    faults.append(
        (
            window,
            "1-pulse stops dropping callbacks",
            lambda: sim_config(pulse, callback_drop_rate=0.0),
        )
    )
    faults.append(
        (window, "SMTP server answers every email", lambda: setattr(smtp, "reset_rate", 0.0))
    )
    faults.append((window, "end of the fault window", lambda: None))
    return sorted(faults, key=lambda fault: fault[0])  # stable: same-time faults keep their order


def accepted_sends(sim) -> list[tuple[str, str, float]]:
    """(consent flag, phone, when the gateway took it) for every message a simulator accepted."""
    with sim.lock:
        return [("allow_sms", m.phone, m.accepted_at) for m in sim.messages.values()]


def received_mails(smtp) -> list[tuple[str, str, float]]:
    """(consent flag, address, when the server stored it) for every email, resets included."""
    with smtp.lock:
        return [
            ("allow_email", address, mail.received_at)
            for mail in smtp.received
            for address in mail.recipients
        ]


def duplicate_addresses(smtp) -> int:
    with smtp.lock:
        seen = Counter(address for mail in smtp.received for address in mail.recipients)
    return sum(1 for count in seen.values() if count > 1)


# A batch read before a withdrawal committed may still be on the wire for up to one
# request (the accounts' 5 s timeout): consent is honoured as of the claim, not after it.
CONSENT_GRACE_SECONDS = 6.0


def sent_without_consent(operator, sends) -> tuple[int, int, list]:
    """Messages a gateway took after the client withdrew the consent their channel needs
    (allow_sms for Viber and SMS, allow_email for email): (beyond the grace, within it,
    examples)."""
    from clients.models import Client, ConsentChange

    clients = Client.objects.filter(operator=operator)
    client_by_address = {
        "allow_sms": dict(clients.values_list("phone", "pk")),
        "allow_email": dict(clients.values_list("email", "pk")),
    }
    changes = defaultdict(list)
    for client_id, flag, changed_at, value in (
        ConsentChange.objects.filter(operator=operator, flag__in=list(client_by_address))
        .order_by("changed_at", "pk")
        .values_list("client_id", "flag", "changed_at", "new_value")
    ):
        changes[(client_id, flag)].append((changed_at.timestamp(), value))

    def allowed(client_id, flag: str, at: float) -> bool:
        value = INITIAL_FLAGS[flag]  # as at fan-out (a client without it was skipped there)
        for when, new_value in changes.get((client_id, flag), []):
            if when > at:
                break
            value = new_value
        return value

    beyond, within, examples = 0, 0, []
    for flag, address, accepted_at in sends:
        client_id = client_by_address[flag].get(address)
        if client_id is None or allowed(client_id, flag, accepted_at):
            continue
        if not allowed(client_id, flag, accepted_at - CONSENT_GRACE_SECONDS):
            beyond += 1
            examples.append({"flag": flag, "address": address, "accepted_at": accepted_at})
        else:
            within += 1
    return beyond, within, examples[:50]


def duplicate_phones(sim) -> int:
    """Phones a simulator accepted more than once on the same first channel, whatever the keys."""
    with sim.lock:
        seen = Counter(
            (m.phone, m.channels[0] if m.channels else "") for m in sim.messages.values()
        )
    return sum(1 for count in seen.values() if count > 1)


def replay_callbacks(campaign_id: int, urls: list[str], limit: int = 5000) -> dict:
    """The last successful callbacks again, twice, newest first: nothing may change."""
    from campaigns.models import Delivery, DeliveryEvent

    def snapshot():
        return dict(Delivery.objects.filter(campaign_id=campaign_id).values_list("pk", "status"))

    def events():
        return DeliveryEvent.objects.filter(delivery__campaign_id=campaign_id).count()

    until = time.monotonic() + 60
    before, events_before = retrying(snapshot, until=until), retrying(events, until=until)
    replayed = list(reversed(urls[-limit:])) * 2
    session = requests.Session()

    def get(url: str) -> int:
        try:
            return session.get(url, timeout=30).status_code
        except requests.RequestException:
            return 0

    with ThreadPoolExecutor(8) as pool:
        answers = Counter(pool.map(get, replayed))
    after, events_after = retrying(snapshot, until=until), retrying(events, until=until)
    changed = [pk for pk, status in after.items() if before.get(pk) != status]
    log(
        f"replayed {len(replayed)} callbacks (the last {len(replayed) // 2}, twice, newest first): "
        f"answers {dict(answers)}, {len(changed)} deliveries changed, "
        f"{events_after - events_before} new events"
    )
    return {
        "replayed": len(replayed),
        "replay_non_200": sum(count for status, count in answers.items() if status != 200),
        "replay_changes": len(changed) + len(set(after) ^ set(before)),
        "replay_new_events": events_after - events_before,
        "changed_ids": changed[:50],
    }


def check(
    args, *, campaign, operator, consent, stats, duplicate_recipients, sends, replay, log_dir
):
    from django.db.models import Count

    from campaigns import counters
    from campaigns.models import CampaignCost, Delivery, DeliveryEvent, Message
    from clients.models import Client, ConsentChange

    until = time.monotonic() + 120
    evidence: dict = {}

    # 1. Every message final.
    open_messages = Message.objects.filter(campaign=campaign, status__in=OPEN_MESSAGE_STATUSES)
    non_final = retrying(open_messages.count, until=until)
    open_deliveries = Delivery.objects.filter(
        campaign=campaign, status__in=OPEN_DELIVERY_STATUSES
    ).count()
    message_statuses = Counter(
        dict(
            Message.objects.filter(campaign=campaign)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
    )
    if non_final or open_deliveries:
        samples = []
        for message in open_messages.order_by("pk")[:20]:
            samples.append(
                {
                    "message": message.pk,
                    "status": message.status,
                    "deliveries": [
                        {
                            **row,
                            "events": list(
                                DeliveryEvent.objects.filter(delivery_id=row["id"])
                                .order_by("pk")
                                .values("status", "source", "provider_status", "received_at")
                            ),
                        }
                        for row in Delivery.objects.filter(message=message)
                        .order_by("step")
                        .values(
                            "id",
                            "step",
                            "channel",
                            "status",
                            "attempts",
                            "idempotency_key",
                            "provider_message_id",
                            "error_message",
                            "lease_expires_at",
                            "next_attempt_at",
                            "expires_at",
                        )
                    ],
                }
            )
        evidence["non_final"] = samples

    # 2. Each simulator took each idempotency key as a new message once. Keys are also
    # counted on receipt, before a gateway deduplicates: on 1-pulse (no idempotency key)
    # a key received twice is a message sent twice; on the cascade gateway it is a
    # resubmission after a claim was taken back, which the gateway answers from the
    # earlier message (reported as resubmitted_keys).
    duplicate_keys = {name: s["duplicate_sends"] for name, s in stats.items()}
    duplicate_keys["pulse"] = stats["pulse"]["duplicate_keys"]
    duplicate_sends = sum(len(keys) for keys in duplicate_keys.values())
    resubmitted_keys = len(stats["cascade_gateway"]["duplicate_keys"])
    if duplicate_sends or any(duplicate_recipients.values()):
        evidence["duplicate_keys"] = {
            name: dict(list(k.items())[:50]) for name, k in duplicate_keys.items()
        }
        evidence["duplicate_recipients"] = duplicate_recipients

    # 3. Counters and costs equal a recount of the delivery rows.
    have, want = counters.counts(campaign.pk), counters.recount(campaign.pk)
    counter_diff = {
        f"{channel}/{status}": {
            "counter": have.get((channel, status), 0),
            "rows": want.get((channel, status), 0),
        }
        for channel, status in sorted(set(have) | set(want))
        if have.get((channel, status), 0) != want.get((channel, status), 0)
    }
    costs = {
        (row.channel, row.currency): row.amount
        for row in CampaignCost.objects.filter(campaign=campaign)
        if row.amount
    }
    recosted = {key: amount for key, amount in counters.recost(campaign.pk).items() if amount}
    cost_diff = {
        f"{channel}/{currency}": {
            "counter": str(costs.get((channel, currency))),
            "rows": str(recosted.get((channel, currency))),
        }
        for channel, currency in sorted(set(costs) | set(recosted))
        if costs.get((channel, currency)) != recosted.get((channel, currency))
    }
    # 3b. Nothing went out after a withdrawal (consent honoured at send time).
    without_consent, within_grace, without_consent_examples = sent_without_consent(operator, sends)
    if without_consent:
        evidence["sent_without_consent"] = without_consent_examples
    if counter_diff or cost_diff:
        evidence["counters"] = counter_diff
        evidence["costs"] = cost_diff

    # 4. No consent change lost: each is in the history, and the final flags are the last ones set.
    history = defaultdict(list)
    for reason, client_id, flag, old, new in ConsentChange.objects.filter(
        operator=operator, reason__startswith="chaos:"
    ).values_list("reason", "client_id", "flag", "old_value", "new_value"):
        history[reason].append((client_id, flag, old, new))
    missing = [
        change
        for change in consent.made
        if [row[:2] + row[3:] for row in history.get(change[0], [])] != [change[1:]]
    ]
    made_reasons = {change[0] for change in consent.made}
    phantom = [reason for reason in history if reason not in made_reasons]
    touched = defaultdict(dict)
    for _reason, client_id, flag, value in consent.made:
        touched[client_id][flag] = value
    final_rows = Client.objects.filter(pk__in=list(touched)).values("pk", *INITIAL_FLAGS)
    wrong_flags = [
        (row["pk"], flag, value, row[flag])
        for row in final_rows
        for flag, value in touched[row["pk"]].items()
        if row[flag] != value
    ]
    # Each flag's history, in the order the thread made the changes, must chain: old = previous new.
    breaks = []
    previous: dict[tuple[int, str], bool] = {}
    for reason, client_id, flag, value in consent.made:
        rows = history.get(reason, [])
        expected_old = previous.get((client_id, flag), INITIAL_FLAGS[flag])
        if rows and rows[0][2] != expected_old:
            breaks.append((reason, client_id, flag, rows[0][2], expected_old))
        previous[(client_id, flag)] = value
    lost_consent_changes = len(missing) + len(wrong_flags)
    if missing or wrong_flags or breaks or phantom or consent.abandoned:
        evidence["consent"] = {
            "missing": missing[:50],
            "wrong_final_flags": wrong_flags[:50],
            "history_breaks": breaks[:50],
            "phantom_rows": phantom[:50],
            "abandoned": consent.abandoned[:50],
        }
    if replay["replay_changes"] or replay["replay_new_events"]:
        evidence["replay"] = replay

    # Proof that the crash landed mid-claim: claims whose lease the sweeper took back.
    lease_expired = DeliveryEvent.objects.filter(
        delivery__campaign=campaign, provider_status="lease_expired"
    ).count()
    attempts = Counter(
        Delivery.objects.filter(campaign=campaign).values_list("attempts", flat=True)
    )
    deliveries_by_channel = Counter(
        Delivery.objects.filter(campaign=campaign).values_list("channel", flat=True)
    )
    gateway, pulse = stats["cascade_gateway"], stats["pulse"]
    log(
        f"messages: {dict(message_statuses)}; deliveries per channel: {dict(deliveries_by_channel)}"
    )
    log(
        f"claims taken back after their lease: {lease_expired}; "
        f"deliveries by claims made: {dict(sorted(attempts.items()))}"
    )
    log(
        f"cascade gateway: {gateway['requests']} requests ({gateway['faulted_requests']} faulted), "
        f"{gateway['accepted']} accepted, {gateway['keys']} keys, "
        f"{gateway['deduplicated']} resubmissions answered from the earlier message, "
        f"{len(gateway['duplicate_keys'])} keys received twice, "
        f"{len(gateway['duplicate_sends'])} keys accepted twice, "
        f"{duplicate_recipients['cascade_gateway']} phones sent twice"
    )
    log(
        f"1-pulse: {pulse['requests']} requests, {pulse['accepted']} accepted, {pulse['keys']} keys, "
        f"{len(pulse['duplicate_keys'])} keys received twice, {duplicate_recipients['pulse']} phones sent twice; "
        f"callbacks ok {pulse['callbacks_sent']}, failed {pulse['callbacks_failed']}, "
        f"dropped {pulse['callbacks_dropped']}, twice {pulse['callbacks_duplicated']}, "
        f"late {pulse['callbacks_reordered']}, not sent {pulse['callbacks_backlog']}"
    )
    mail = stats["smtp"]
    log(
        f"SMTP: {mail['accepted']} emails stored ({mail['faulted_after_store']} then reset), "
        f"{len(mail['duplicate_sends'])} keys received twice, "
        f"{duplicate_recipients['smtp']} addresses sent twice"
    )
    log(
        f"non-final messages {non_final} (open deliveries {open_deliveries}); "
        f"counter mismatches {len(counter_diff)}, cost mismatches {len(cost_diff)}"
    )
    log(
        f"consent: {len(consent.made)} changes ({consent.retries} retries through outages), "
        f"{len(missing)} missing from the history, {len(wrong_flags)} final flags wrong, "
        f"{len(breaks)} history breaks, {len(phantom)} rows nobody made, "
        f"{len(consent.abandoned)} abandoned"
    )
    for name, detail in evidence.items():
        log(f"EVIDENCE {name}: {json.dumps(detail, default=str)[:1500]}")
    if evidence:
        with open(os.path.join(log_dir, "evidence.json"), "w") as output:
            json.dump(evidence, output, default=str, indent=1)

    return {
        "recipients": args.recipients,
        "non_final": non_final,
        "duplicate_sends": duplicate_sends,
        "resubmitted_keys": resubmitted_keys,
        "counter_mismatches": len(counter_diff),
        "lost_consent_changes": lost_consent_changes,
        "sent_without_consent": without_consent,
        "sent_as_consent_was_withdrawn": within_grace,
        "open_deliveries": open_deliveries,
        "duplicate_recipients": sum(duplicate_recipients.values()),
        "cost_mismatches": len(cost_diff),
        "consent_history_breaks": len(breaks),
        "consent_changes": len(consent.made),
        "consent_retries": consent.retries,
        "replay_changes": replay["replay_changes"],
        "replay_new_events": replay["replay_new_events"],
        "replayed_callbacks": replay["replayed"],
        "messages": dict(message_statuses),
        "sms_steps": deliveries_by_channel.get("sms", 0),
        "lease_expired": lease_expired,
        "gateway_faulted_requests": gateway["faulted_requests"],
        "email_steps": deliveries_by_channel.get("email", 0),
        "faulted_after_store": {
            "cascade_gateway": gateway["faulted_after_store"],
            "pulse": pulse["faulted_after_store"],
            "smtp": stats["smtp"]["faulted_after_store"],
        },
        "gateway_deduplicated": gateway["deduplicated"],
        "callbacks": {
            name: pulse[f"callbacks_{name}"]
            for name in ("sent", "failed", "dropped", "duplicated", "reordered", "backlog")
        },
    }


if __name__ == "__main__":
    main()

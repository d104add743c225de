"""The partner API's SendMessageProcess under gunicorn and PostgreSQL, loaded over loopback.

    python -m bench.api [--seconds 20] [--connections 32]

Uses DATABASE_URL if it points at PostgreSQL, else starts a throw-away cluster;
migrates and creates a fresh operator for the run (a consenting SMS client, a
cascade gateway account and route, a partner Token). Then starts gunicorn with
config/gunicorn.py and production settings (DEBUG=0, persistent database
connections, WARNING logs) and loads it with wrk (installed with apt-get when
missing; one thread, about 0.1 ms of CPU per request, so it leaves the cores to
the server): HTTP/1.1 keep-alive connections (sync workers close each one after
the answer and wrk reconnects), every request distinct (an identical request
within 60 s is answered from the retry record), every answer's body checked
for HTTP 200 and ErrorCode 0. JSON bodies first, then XML (the seeds'
DataContract shape), each after a short warm-up. Queries per request are
counted in-process against the same database with django.test.Client.

Only the accepting side is measured: no qcluster runs, so the queued messages
are never sent (their account points at a closed port). Dispatch is measured by
bench.dispatch. On a reused DATABASE_URL the run's operator, messages and queued
tasks stay behind: do not point it at a database a qcluster serves.

Prints machine, setup, per-format figures, CPU per process group (gunicorn,
PostgreSQL, wrk, and anything else running: a busy machine shows there) and
the database connections in use. Then the floor: the same connections against
GET /healthz, which passes the same gunicorn and middleware and answers "ok"
without the database; api_vs_floor is the worse format's rate over the floor's
(1.0 would mean the API costs no more than answering at all). The last line is
one JSON object whose rps, p50 and p99 are the worse format's (the sustained
figure a partner can count on whichever format it sends).
"""

import argparse
import http.client
import os
import re
import resource
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

from bench.common import cpu_snapshot, machine, print_result
from bench.wrk import find_wrk, run_wrk, summary

BASE_DIR = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = BASE_DIR / "config" / "gunicorn.py"
PATH = "/api/marketing/SendMessageProcess"
PHONE = 79001234567
ABSTRACTIONS = (
    "http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation.Abstractions"
)
MARKETING_REQUEST = (
    "http://schemas.datacontract.org/2004/07/"
    "LCManagerPartner.Implementation.Request.MarketingRequest"
)


def json_body(operator_id: int, token: str, text: str) -> str:
    return (
        f'{{"Operator":{operator_id},"Token":{token},"CommunicationType":1,'
        f'"Phone":{PHONE},"TextMessage":"{text}"}}'
    )


def xml_body(operator_id: int, token: str, text: str) -> str:
    # DataContract order: the base class's members (Abstractions namespace) first,
    # then the request's own, each group alphabetical.
    return (
        f'<SendMessageProcessRequest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns="{MARKETING_REQUEST}">'
        f'<Operator xmlns="{ABSTRACTIONS}">{operator_id}</Operator>'
        f'<Token xmlns="{ABSTRACTIONS}">{token}</Token>'
        f"<CommunicationType>1</CommunicationType>"
        f"<Phone>{PHONE}</Phone>"
        f"<TextMessage>{text}</TextMessage>"
        f"</SendMessageProcessRequest>"
    )


BODIES = {"json": json_body, "xml": xml_body}
MEDIA_TYPES = {"json": "application/json", "xml": "application/xml"}

# ErrorCode 0 in each format's answer: Lua patterns for wrk, regular expressions here.
OK_PATTERNS = {
    "json": '"ErrorCode"%s*:%s*0%s*[,}]',
    "xml": "<ErrorCode[^>]*>%s*0%s*</ErrorCode>",
}
OK_REGEX = {
    name: re.compile(pattern.replace("%s", r"\s").encode()) for name, pattern in OK_PATTERNS.items()
}


class Stop(Exception):
    """SIGTERM: leave through the same clean-up as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per format")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds per format")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--formats", default="json,xml", help="comma-separated: json, xml")
    parser.add_argument(
        "--workers", type=int, help="gunicorn workers (default: WEB_CONCURRENCY or the config's)"
    )
    parser.add_argument("--threads", type=int, help="threads per gthread worker")
    parser.add_argument("--worker-class", help="sync or gthread")
    args = parser.parse_args()
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    if not formats or set(formats) - set(BODIES):
        parser.error("--formats takes json and/or xml")

    signal.signal(signal.SIGTERM, _on_sigterm)
    temp_pg = None
    server = None
    workdir = tempfile.mkdtemp(prefix="cascade-bench-api.")
    try:
        wrk = find_wrk()
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            from bench.pg import TempPostgres

            temp_pg = TempPostgres()
            os.environ["DATABASE_URL"] = temp_pg.start()
        # The benchmark process reads the same settings as the server, so the
        # in-process query count runs the same code path.
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(40),
            ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="0",
            # One credential sends everything: the per-credential limit is not under test.
            CASCADE_API_REQUESTS_PER_MINUTE=str(10**9),
            LOG_LEVEL="WARNING",
        )
        if args.workers:
            os.environ["WEB_CONCURRENCY"] = str(args.workers)
        if args.threads:
            os.environ["GUNICORN_THREADS"] = str(args.threads)
        if args.worker_class:
            os.environ["GUNICORN_WORKER_CLASS"] = args.worker_class
        # No collectstatic here: the API serves no static files.
        warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        fixture = create_fixture()
        gunicorn = runpy.run_path(str(GUNICORN_CONFIG))
        worker_class = gunicorn["worker_class"]
        if worker_class == "sync" and gunicorn["threads"] > 1:
            worker_class = "gthread"  # what gunicorn itself does with sync and threads > 1
        setup = (
            f"gunicorn {worker_class}, {gunicorn['workers']} workers"
            + (
                f" of {gunicorn['threads']} threads, keepalive {gunicorn['keepalive']} s"
                if worker_class == "gthread"
                else " (no keep-alive: one connection per request)"
                if worker_class == "sync"
                else ""
            )
            + f"; PostgreSQL {pg_version()}, "
            f"CONN_MAX_AGE {settings.CONN_MAX_AGE}; {args.connections} connections from "
            "wrk (1 thread), "
            f"{args.warmup} s warm-up + {args.seconds} s per format"
        )
        print(f"bench.api on {machine()}")
        print(f"setup: {setup}")

        queries = count_queries(fixture)
        postmaster = local_postmaster()
        connection.close()  # only gunicorn's connections during the load

        port = free_port()
        log_path = os.path.join(workdir, "gunicorn.log")
        server = start_gunicorn(port, log_path)
        url = f"http://127.0.0.1:{port}{PATH}"
        wait_until_answering(port, server, log_path)

        results = {}
        for name in formats:
            results[name] = load(wrk, url, name, fixture, args, workdir, server, postmaster)
        floor = load_floor(wrk, f"http://127.0.0.1:{port}{FLOOR_PATH}", args, workdir)
        print_format_lines(results)
        print(
            f"floor ({FLOOR_PATH}: the same gunicorn and middleware, a view that answers "
            f'"ok" with no database): {floor["rps"]:.0f}/s; latency p50 {floor["p50_ms"]:.1f} ms, '
            f"p99 {floor['p99_ms']:.1f} ms; errors {floor['errors']}"
        )
        print(
            "queries per request (in-process, django.test.Client, CaptureQueriesContext; "
            f"BEGIN and COMMIT included): {queries['summary']}"
        )
        print(f"  {queries['breakdown']}")
    finally:
        if server is not None:
            stop_process_group(server)
        if temp_pg:
            temp_pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    worst = min(results.values(), key=lambda r: r["rps"])
    print(
        f"last line: rps, p50_ms and p99_ms are the worse format's ({worst['format']}); "
        "errors are both formats' total"
    )
    result = {
        "api_vs_floor": round(worst["rps"] / floor["rps"], 3),
        "floor_rps": round(floor["rps"]),
        "rps": round(worst["rps"]),
        "p50_ms": round(max(r["p50_ms"] for r in results.values()), 1),
        "p99_ms": round(max(r["p99_ms"] for r in results.values()), 1),
        "errors": sum(r["errors"] for r in results.values()),
        "queries_per_request": queries["steady"],
    }
    for name, r in results.items():
        result[f"{name}_rps"] = round(r["rps"])
    result["connections"] = args.connections
    print_result(result)


def create_fixture() -> dict:
    from clients.models import Client, Operator
    from clients.services import issue_credential
    from providers.models import ChannelRoute, ProviderAccount

    stamp = time.time_ns()
    # A new operator each run: with a reused DATABASE_URL, earlier runs stay out of the way.
    operator = Operator.objects.create(code=f"bench-api-{stamp}", name="Bench API")
    Client.objects.create(operator=operator, phone=str(PHONE), first_name="Bench", allow_sms=True)
    account = ProviderAccount.objects.create(
        operator=operator,
        name=f"Bench API gateway {stamp}",
        backend="cascade_gateway",
        base_url="http://127.0.0.1:9/",  # nowhere: no qcluster runs during this benchmark
        credentials={"login": "bench", "password": "bench"},
        channels=["sms"],
        options={"flavour": "json"},
        sender_names={"sms": "Bench"},
        max_batch=200,
    )
    ChannelRoute.objects.create(operator=operator, channel="sms", priority=1, account=account)
    issued = issue_credential(operator=operator, name="bench.api")
    return {"operator_id": operator.pk, "token": issued.secret, "stamp": stamp}


# Statements that only some requests make, and why.
OCCASIONAL = {
    "clients_apicredential": "the credential's last_used_at, at most once a minute per process",
    "django_q_ormq": "the dispatcher kick, at most every 2 s per process",
}


def count_queries(fixture: dict) -> dict:
    """Queries of SendMessageProcess calls through the whole middleware stack, JSON and XML.

    Before each call the connection is treated as gunicorn's request_started
    signal does (close_old_connections), so CONN_HEALTH_CHECKS' SELECT 1, which
    Django runs outside its query log, happens as in production and is counted
    apart.
    """
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    health_checks = 0
    is_usable = connection.is_usable

    def counted_is_usable() -> bool:
        nonlocal health_checks
        health_checks += 1
        return is_usable()

    calls = []
    connection.is_usable = counted_is_usable
    try:
        for call in range(10):
            name = "json" if call % 2 == 0 else "xml"
            body = BODIES[name](
                fixture["operator_id"], fixture["token"], f"queries-{fixture['stamp']}-{call}"
            )
            close_old_connections()
            checks_before = health_checks
            with CaptureQueriesContext(connection) as captured:
                response = client.post(
                    PATH, data=body, content_type=MEDIA_TYPES[name], HTTP_ACCEPT=MEDIA_TYPES[name]
                )
            if response.status_code != 200 or not OK_REGEX[name].search(response.content):
                raise SystemExit(
                    f"SendMessageProcess ({name}) answered {response.status_code}: "
                    f"{response.content[:500]!r}"
                )
            shapes = Counter(_shape(query["sql"]) for query in captured)
            calls.append((name, shapes, health_checks - checks_before))
    finally:
        del connection.is_usable
    numbers = [sum(shapes.values()) for _, shapes, _ in calls]
    steady = Counter(numbers).most_common(1)[0][0]
    steady_shapes = next(shapes for _, shapes, _ in calls if sum(shapes.values()) == steady)
    checks = [checks for _, _, checks in calls]
    usual_checks = Counter(checks).most_common(1)[0][0]
    listing = " ".join(f"{name}:{sum(shapes.values())}" for name, shapes, _ in calls)
    if len(set(numbers)) == 1:
        summary = f"{steady} on every call ({listing})"
    else:
        extras = Counter()
        for _, shapes, _ in calls:
            extras.update(shapes - steady_shapes)
        explained = "; ".join(
            f"{shape} x{n}"
            + "".join(f" ({why})" for table, why in OCCASIONAL.items() if table in shape)
            for shape, n in extras.items()
        )
        summary = f"{steady} in the steady state, not on every call ({listing}); extra: {explained}"
    summary += (
        f"; plus {usual_checks} health-check SELECT 1 per request (CONN_HEALTH_CHECKS, outside "
        "Django's query log)"
    )
    if len(set(checks)) > 1:
        summary += (
            f", per call {' '.join(map(str, checks))} (django-q's broker closes old "
            "connections before it enqueues, so a call that kicks the dispatcher checks twice)"
        )
    breakdown = "steady call: " + ", ".join(f"{shape} x{n}" for shape, n in steady_shapes.items())
    return {"steady": steady, "counts": numbers, "summary": summary, "breakdown": breakdown}


def _shape(sql: str) -> str:
    """A statement's verb and table: SELECT "clients_client", INSERT "campaigns_message", …"""
    words = sql.split()
    verb = words[0].upper()
    table = ""
    if verb in ("INSERT", "UPDATE", "DELETE"):
        table = next((word for word in words if word.startswith('"')), "")
    elif verb == "SELECT":
        after_from = sql.split(" FROM ", 1)
        table = after_from[1].split()[0] if len(after_from) > 1 else words[1].split("(")[0]
    return f"{verb} {table}".strip()


def pg_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0].split()[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(port: int, log_path: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(GUNICORN_CONFIG),
                "-b",
                f"127.0.0.1:{port}",
                # The default control socket path is shared by every gunicorn of the user.
                "--no-control-socket",
                "config.wsgi",
            ],
            cwd=BASE_DIR,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )


def wait_until_answering(port: int, server: subprocess.Popen, log_path: str) -> None:
    """Any HTTP answer (a GET is 405) means a worker runs the application."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}):\n{tail(log_path)}")
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            probe.request("GET", PATH)
            probe.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
        finally:
            probe.close()
    raise SystemExit(f"gunicorn did not answer within 60 s:\n{tail(log_path)}")


def tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as log:
        return "".join(log.readlines()[-lines:])


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


FLOOR_PATH = "/healthz"


def load_floor(wrk, url, args, workdir) -> dict:
    """The same connections against the health check: what serving any request costs here."""
    spec = {"method": "GET", "path": FLOOR_PATH, "body": "", "media_type": "", "ok": "^ok$"}
    run_wrk(
        wrk, url, spec, seconds=args.warmup, connections=args.connections, start=1, workdir=workdir
    )
    figures, _ = run_wrk(
        wrk,
        url,
        spec,
        seconds=args.seconds,
        connections=args.connections,
        start=1,
        workdir=workdir,
    )
    return summary(figures)


def load(wrk, url, name, fixture, args, workdir, server, postmaster) -> dict:
    """A warm-up, then the measured run; CPU and database connections sampled meanwhile."""
    marker = "\x00"
    head, tail_ = BODIES[name](fixture["operator_id"], fixture["token"], marker).split(marker)
    # A distinct text per request (an identical one within 60 s is answered from the
    # retry record): the run's stamp, the format, and wrk's request number.
    spec = {
        "method": "POST",
        "path": PATH,
        "body": f"{head}bench-{name}-{fixture['stamp']}-@N@{tail_}",
        "media_type": MEDIA_TYPES[name],
        "ok": OK_PATTERNS[name],
    }

    def timed_run(seconds: int, start: int) -> tuple[dict, str, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        figures, sample = run_wrk(
            wrk,
            url,
            spec,
            seconds=seconds,
            connections=args.connections,
            start=start,
            workdir=workdir,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return figures, sample, cpu

    warm, _, _ = timed_run(args.warmup, 1)
    sampler = ConnectionSampler()
    sampler.start()
    cpu_before = cpu_snapshot({"gunicorn": server.pid}, postmaster)
    figures, sample, wrk_cpu = timed_run(args.seconds, 1 + warm["handed"])
    cpu_after = cpu_snapshot({"gunicorn": server.pid}, postmaster)
    sampler.stop()

    figures_ms = summary(figures)
    seconds = figures_ms["seconds"]
    return {
        "format": name,
        **figures_ms,
        "figures": figures,
        "sample": sample,
        "cpu": {
            "gunicorn": (cpu_after["gunicorn"] - cpu_before["gunicorn"]) / seconds,
            "postgres": (cpu_after["postgres"] - cpu_before["postgres"]) / seconds
            if postmaster
            else None,
            "wrk": wrk_cpu / seconds,
            "machine": (cpu_after["machine"] - cpu_before["machine"]) / seconds,
        },
        "connections": sampler.result(),
    }


def local_postmaster() -> int | None:
    """The PostgreSQL server's main process if it runs on this machine (its CPU is then counted)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    try:
        with open(f"/proc/{backend}/stat") as file:
            stat = file.read()
    except OSError:  # another machine (or container)
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


class ConnectionSampler:
    """Client connections to this database (all, and running a query) twice a second."""

    def __init__(self):
        self.samples: list[tuple[int, int]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        import psycopg
        from django.conf import settings

        db = settings.DATABASES["default"]
        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"] or 5432,
            dbname=db["NAME"],
            user=db["USER"],
            password=db["PASSWORD"] or None,
            autocommit=True,
        ) as conn:
            while not self.stopping.wait(0.5):
                row = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active')"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                self.samples.append((row[0], row[1]))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)

    def result(self) -> dict:
        if not self.samples:
            return {"open_max": 0, "active_max": 0, "active_mean": 0.0}
        return {
            "open_max": max(open_ for open_, _ in self.samples),
            "active_max": max(active for _, active in self.samples),
            "active_mean": sum(active for _, active in self.samples) / len(self.samples),
        }


def print_format_lines(results: dict) -> None:
    for name, r in results.items():
        f = r["figures"]
        cpu, conns = r["cpu"], r["connections"]
        print(
            f"{name}: {r['requests']} requests in {r['seconds']:.1f} s = {r['rps']:,.0f}/s; "
            f"latency p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
        )
        print(
            f"  errors {r['errors']}: connect {f['connect']}, read {f['read']}, "
            f"write {f['write']}, timeout (>2 s) {f['timeout']}, HTTP not 200 {f['bad_status']}, "
            f"ErrorCode not 0 {f['bad_body']} (every answer's body checked)"
            + (f"; first bad answer: {r['sample']}" if r["sample"] else "")
        )
        postgres = cpu["postgres"]
        other = cpu["machine"] - cpu["gunicorn"] - (postgres or 0) - cpu["wrk"]
        print(
            f"  CPU (cores busy): gunicorn {cpu['gunicorn']:.2f}, PostgreSQL "
            + (f"{postgres:.2f}" if postgres is not None else "n/a (not on this machine)")
            + f", wrk {cpu['wrk']:.2f}, anything else {other:.2f}; whole machine "
            f"{cpu['machine']:.2f} of {os.cpu_count()}"
        )
        print(
            f"  CPU per request: gunicorn {cpu['gunicorn'] * 1000 / r['rps']:.2f} ms"
            + (f", PostgreSQL {postgres * 1000 / r['rps']:.2f} ms" if postgres is not None else "")
            + f", wrk {cpu['wrk'] * 1000 / r['rps']:.2f} ms"
        )
        print(
            f"  PostgreSQL client connections: at most {conns['open_max']} open, "
            f"{conns['active_max']} running a query (mean {conns['active_mean']:.1f})"
        )


if __name__ == "__main__":
    main()

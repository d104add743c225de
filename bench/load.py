"""Cascade under load: gunicorn + PostgreSQL + Redis broker + qcluster, loaded over loopback.

    python -m bench.load [--seconds 60] [--connections 32] [--scenarios send,consent,pulse,bsg,dashboard]

Starts a throw-away PostgreSQL (or uses DATABASE_URL if it points at
PostgreSQL), a private Redis (the task broker), a cascade gateway simulator,
one qcluster and gunicorn with config/gunicorn.py and production settings
(DEBUG=0, WARNING logs). Then, one after the other, wrk (one thread; bounded
by --seconds and its 2 s per-request timeout) loads each scenario for a warm-up
and --seconds measured seconds:

  send       POST api/marketing/SendMessageProcess (JSON), every body distinct;
             the qcluster dispatches the messages to the gateway simulator meanwhile
  consent    POST api/client/ClientUpdateCommunication (JSON), flipping consent
             flags of 10,000 clients in turn
  pulse      GET 1-pulse status callbacks, each about another submitted delivery
  bsg        POST BSG status callbacks (JSON), each about another submitted delivery
  dashboard  GET a 100,000-recipient campaign's dashboard page, signed in

Every answer is checked (HTTP 200 and, for the partner API, ErrorCode 0;
"OK" for callbacks; the campaign's name on the dashboard). For the callback
scenarios the run then waits until the webhook's inbox is empty and counts
the deliveries that took their new status: `lost` is the callbacks answered
200 whose status is not in the database (it must be 0). It also checks that
the two callback campaigns' counters equal a recount of their deliveries.

Per scenario it prints requests/s, latency p50/p95/p99, errors, the CPU of
gunicorn, the qcluster, PostgreSQL and wrk, and the database's client
connections (most open, most running a query). The last line is one JSON
object.

--durable keeps PostgreSQL's fsync and synchronous commits on (each commit
waits for the disk, as in production); by default they are off, as in the
other benchmarks, so the figures are of Cascade and not of this disk.
"""

import argparse
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench.api import (
    ConnectionSampler,
    local_postmaster,
    pg_version,
    start_gunicorn,
    stop_process_group,
    tail,
    wait_until_answering,
)
from bench.common import cpu_snapshot, free_port, machine, print_result
from bench.wrk import errors, find_wrk, run_wrk, summary

BASE_DIR = Path(__file__).resolve().parent.parent
SCENARIOS = ("send", "consent", "pulse", "bsg", "dashboard", "redirect")
CALLBACK_SCENARIOS = ("pulse", "bsg")
CONSENT_CLIENTS = 10_000
SEND_PHONE = 79001234567
PULSE_SECRET = "load-pulse-" + "0" * 24
BSG_SECRET = "load-bsg-" + "0" * 24


OK_API = '"ErrorCode"%s*:%s*0%s*[,}]'


class Stop(Exception):
    """SIGTERM: leave through the same clean-up as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Stop()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds per scenario")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--callbacks",
        type=int,
        default=250_000,
        help="submitted deliveries per callback scenario (each callback is about another one)",
    )
    parser.add_argument("--dashboard-recipients", type=int, default=100_000)
    parser.add_argument(
        "--redirect-messages", type=int, default=100_000, help="messages with a tracked link"
    )
    parser.add_argument(
        "--dashboard-connections",
        type=int,
        default=4,
        help="concurrent dashboard viewers (each page costs ~100 ms of database time at "
        "100,000 recipients; a team of marketers polling every few seconds is fewer)",
    )
    parser.add_argument("--durable", action="store_true", help="PostgreSQL with fsync on")
    args = parser.parse_args(argv)
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if not args.scenarios or set(args.scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios takes some of {', '.join(SCENARIOS)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    workdir = tempfile.mkdtemp(prefix="cascade-bench-load.")
    temp_pg = redis_server = gateway = server = cluster = None
    results: dict[str, dict] = {}
    try:
        wrk = find_wrk()
        if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            from bench.pg import TempPostgres

            temp_pg = TempPostgres(durable=args.durable)
            os.environ["DATABASE_URL"] = temp_pg.start()
        from bench.redis_server import TempRedis

        redis_server = TempRedis(workdir)
        redis_server.start()
        port = free_port()
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(40),
            ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="0",
            # The pages' static files by their plain names: no collectstatic for a benchmark.
            STATIC_MANIFEST="0",
            REDIS_URL=redis_server.url,
            CASCADE_PUBLIC_URL=f"http://127.0.0.1:{port}",
            # One credential sends everything: the per-credential limit is not under test.
            CASCADE_API_REQUESTS_PER_MINUTE=str(10**9),
            LOG_LEVEL="WARNING",
        )
        warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        from providers.simulators.base import SimulatorConfig
        from providers.simulators.cascade_gateway import CascadeGatewaySimulator

        call_command("migrate", verbosity=0)
        gateway = CascadeGatewaySimulator(config=SimulatorConfig(delivery_delay=0.5)).start()
        started = time.monotonic()
        fixture = create_fixture(args, gateway.url)
        print(f"bench.load on {machine()}")
        print(
            f"setup: gunicorn (config/gunicorn.py defaults), 1 qcluster of "
            f"{settings.Q_CLUSTER['workers']} workers on a Redis broker, PostgreSQL "
            f"{pg_version()} ({'fsync on' if args.durable else 'fsync off'}), CONN_MAX_AGE "
            f"{settings.CONN_MAX_AGE}; wrk 1 thread, {args.connections} connections, "
            f"{args.warmup} s warm-up + {args.seconds} s per scenario; fixtures built in "
            f"{time.monotonic() - started:.0f} s"
        )
        postmaster = local_postmaster()
        connection.close()

        cluster = start_cluster(workdir)
        log_path = os.path.join(workdir, "gunicorn.log")
        server = start_gunicorn(port, log_path)
        wait_until_answering(port, server, log_path)
        base = f"http://127.0.0.1:{port}"
        for name in args.scenarios:
            results[name] = run_scenario(
                name, wrk, base, fixture, args, workdir, server, cluster, postmaster
            )
            print_scenario(results[name])
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{tail(log_path)}")
    finally:
        for process in (server, cluster):
            if process is not None:
                stop_process_group(process)
        if gateway is not None:
            gateway.stop()
        if redis_server is not None:
            redis_server.cleanup()
        if temp_pg:
            temp_pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = {"seconds": args.seconds, "connections": args.connections}
    for name, r in results.items():
        summary[f"{name}_rps"] = round(r["rps"])
        summary[f"{name}_p99_ms"] = round(r["p99_ms"], 1)
    summary["errors"] = sum(r["errors"] for r in results.values())
    callbacks = [results[name] for name in CALLBACK_SCENARIOS if name in results]
    if callbacks:
        summary["callbacks_rps"] = round(min(r["rps"] for r in callbacks))
        summary["callbacks_lost"] = sum(r["lost"] for r in callbacks)
        summary["counter_mismatches"] = sum(r["counter_mismatches"] for r in callbacks)
    summary["db_connections_max"] = max(r["connections"]["open_max"] for r in results.values())
    print_result(summary)


def start_cluster(workdir: str) -> subprocess.Popen:
    with open(os.path.join(workdir, "qcluster.log"), "ab") as output:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=BASE_DIR,
            env=dict(os.environ),
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


# ------------------------------------------------------------------------------- fixtures


def create_fixture(args, gateway_url: str) -> dict:
    from django.db import connection
    from django.test import Client as Browser

    from bench.dashboard import build as build_finished_campaign
    from clients.models import Client, Operator
    from clients.services import issue_credential
    from providers.models import ChannelRoute, ProviderAccount

    stamp = time.time_ns()
    operator = Operator.objects.create(code=f"bench-load-{stamp}", name="Bench load")
    Client.objects.create(
        operator=operator, phone=str(SEND_PHONE), first_name="Send", allow_sms=True
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name,"
            " middle_name, push_tokens, viber_id, vk_id, allow_sms, allow_email, allow_push,"
            " allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(78100000000 + g AS VARCHAR), '', 'Client' || g, '', '', '[]', '',"
            " '', TRUE, TRUE, FALSE, FALSE, now(), now() FROM generate_series(1, %s) g",
            [operator.pk, CONSENT_CLIENTS],
        )
    client_ids = Client.objects.filter(operator=operator, first_name__startswith="Client")
    first_client = min(client_ids.values_list("pk", flat=True))
    gateway = ProviderAccount.objects.create(
        operator=operator,
        name="Gateway",
        backend="cascade_gateway",
        base_url=gateway_url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["sms"],
        options={"flavour": "json"},
        sender_names={"sms": "Bench"},
        max_batch=200,
    )
    ChannelRoute.objects.create(operator=operator, channel="sms", priority=1, account=gateway)
    token = issue_credential(operator=operator, name="bench.load").secret
    fixture = {
        "operator_id": operator.pk,
        "token": token,
        "stamp": stamp,
        "first_client": first_client,
    }
    if "pulse" in args.scenarios:
        fixture["pulse"] = submitted_deliveries(
            operator, "pulse", "sms", PULSE_SECRET, "lp", args.callbacks
        )
    if "bsg" in args.scenarios:
        # BSG's Viber message ids are numbers; Cascade keeps them as they are.
        fixture["bsg"] = submitted_deliveries(
            operator, "bsg", "viber", BSG_SECRET, "", args.callbacks
        )
    if "dashboard" in args.scenarios:
        campaign, user = build_finished_campaign(args.dashboard_recipients)
        browser = Browser(HTTP_HOST="127.0.0.1")
        browser.force_login(user)
        fixture["dashboard"] = {
            "campaign_id": campaign.pk,
            "name": campaign.name,
            "cookie": f"sessionid={browser.cookies['sessionid'].value}",
        }
    if "redirect" in args.scenarios:
        fixture["redirect"] = tracked_links(operator, args.redirect_messages)
    return fixture


def tracked_links(operator, count: int) -> dict:
    """A campaign of `count` messages whose template holds one tracked link, and their codes."""
    from campaigns import links
    from campaigns.models import Campaign, Message, MessageTemplate

    template = MessageTemplate.objects.create(
        operator=operator, name="Bench link", text="Sale https://shop.example/sale"
    )
    campaign = Campaign.objects.create(
        operator=operator,
        name="Bench links",
        template=template,
        channels=["sms"],
        track_links=True,
        state=Campaign.State.RUNNING,
    )
    Message.objects.bulk_create(
        Message(operator=operator, campaign=campaign, recipient_key=f"r{i}", phone="79160000000")
        for i in range(count)
    )
    ids = Message.objects.filter(campaign=campaign).values_list("pk", flat=True)
    return {"paths": [f"/l/{links.encode(pk, 'sms', 0)}" for pk in ids], "campaign_id": campaign.pk}


def submitted_deliveries(operator, backend, channel, secret, prefix, count) -> dict:
    """A running campaign of `count` deliveries at `backend`, all sent, none due for polling."""
    from django.db import connection
    from django.utils import timezone

    from campaigns import counters
    from campaigns.models import Campaign, MessageTemplate
    from providers.models import ProviderAccount

    account = ProviderAccount.objects.create(
        operator=operator,
        name=f"Callbacks {backend}",
        backend=backend,
        base_url="http://127.0.0.1:9/",  # never called: nothing is due for sending or polling
        credentials={"token": "t", "api_key": "k"},
        channels=[channel],
        callback_secrets=[secret],
    )
    template = MessageTemplate.objects.create(operator=operator, name=f"T {backend}", text="Hi")
    now = timezone.now()
    campaign = Campaign.objects.create(
        operator=operator,
        name=f"Callbacks {backend}",
        template=template,
        channels=[channel],
        state=Campaign.State.RUNNING,
        launched_at=now,
        fanned_out_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_message (operator_id, campaign_id, client_id, recipient_key,"
            " phone, email, purpose, title, text, variables, attachments, status, created_at,"
            " updated_at) SELECT %s, %s, NULL, 'load:' || g, CAST(79200000000 + g AS VARCHAR),"
            " '', 'promotional', '', 'Hi', '{}', '[]', 'in_progress', %s, %s"
            " FROM generate_series(1, %s) g",
            [operator.pk, campaign.pk, now, now, count],
        )
        # recipient_key 'load:<n>' carries n: delivery n's gateway id is prefix || n.
        cursor.execute(
            "INSERT INTO campaigns_delivery (operator_id, message_id, campaign_id, step, channel,"
            " account_id, status, idempotency_key, provider_message_id, parts, price, currency,"
            " error_code, error_message, native_channels, attempts, next_attempt_at,"
            " submitted_at, created_at, updated_at)"
            " SELECT operator_id, id, campaign_id, 0, %s, %s, 'sent', 'load' || id,"
            " %s || substr(recipient_key, 6), 1, NULL, '', '', '', '[]', 1,"
            " now() + interval '1 day', %s, %s, %s FROM campaigns_message WHERE campaign_id = %s",
            [channel, account.pk, prefix, now, now, now, campaign.pk],
        )
        cursor.execute("ANALYZE campaigns_delivery; ANALYZE campaigns_message")
    for (row_channel, status), number in counters.recount(campaign.pk).items():
        counters.bump({(campaign.pk, row_channel, status): number})
    return {
        "account_id": account.pk,
        "campaign_id": campaign.pk,
        "secret": secret,
        "prefix": prefix,
        "next": 1,  # the next delivery number a callback is about
        "count": count,
    }


# ------------------------------------------------------------------------------- scenarios


def request_for(name: str, fixture: dict) -> dict:
    """What wrk sends for a scenario: method, path, body, media type, what a good answer holds."""
    operator, token = fixture["operator_id"], fixture["token"]
    if name == "send":
        body = (
            f'{{"Operator":{operator},"Token":{token},"CommunicationType":1,'
            f'"Phone":{SEND_PHONE},"TextMessage":"Load {fixture["stamp"]} @N@"}}'
        )
        return {
            "method": "POST",
            "path": "/api/marketing/SendMessageProcess",
            "body": body,
            "media_type": "application/json",
            "ok": OK_API,
        }
    if name == "consent":
        body = (
            f'{{"Operator":{operator},"Token":{token},"Client":@C@,"AllowSms":@B@,'
            '"AllowEmail":true}'
        )
        return {
            "method": "POST",
            "path": "/api/client/ClientUpdateCommunication",
            "body": body,
            "media_type": "application/json",
            "ok": OK_API,
        }
    if name == "pulse":
        pulse = fixture["pulse"]
        return {
            "method": "GET",
            "path": (
                f"/providers/webhooks/pulse/{pulse['account_id']}/{pulse['secret']}/"
                f"?id={pulse['prefix']}@N@&status=delivered"
            ),
            "body": "",
            "media_type": "",
            "ok": "OK",
        }
    if name == "bsg":
        bsg = fixture["bsg"]
        body = (
            '{"id":@N@,"reference":"","status":"delivered","price":0.35,"currency":"RUB",'
            '"time_dr":"2026-11-23T10:00:00+00:00"}'
        )
        return {
            "method": "POST",
            "path": f"/providers/webhooks/bsg/{bsg['account_id']}/{bsg['secret']}/",
            "body": body,
            "media_type": "application/json",
            "ok": "OK",
        }
    if name == "redirect":
        return {
            "method": "GET",
            "path": "",
            "paths": fixture["redirect"]["paths"],
            "body": "",
            "media_type": "",
            "ok": "",
            "status": 302,
        }
    dashboard = fixture["dashboard"]
    return {
        "method": "GET",
        "path": f"/campaigns/{dashboard['campaign_id']}/",
        "body": "",
        "media_type": "",
        "ok": dashboard["name"],
        "cookie": dashboard["cookie"],
    }


def run_scenario(name, wrk, base, fixture, args, workdir, server, cluster, postmaster) -> dict:
    spec = request_for(name, fixture)
    if spec.get("paths"):
        spec["paths_file"] = os.path.join(workdir, f"{name}.paths")
        with open(spec["paths_file"], "w") as file:
            file.write("\n".join(spec["paths"]) + "\n")
    callbacks = fixture.get(name) if name in CALLBACK_SCENARIOS else None
    start = callbacks["next"] if callbacks else 1
    connections = args.dashboard_connections if name == "dashboard" else args.connections
    clients = {"client_base": fixture["first_client"], "clients": CONSENT_CLIENTS}
    warm, _ = run_wrk(
        wrk,
        base,
        spec,
        seconds=args.warmup,
        connections=connections,
        start=start,
        workdir=workdir,
        **clients,
    )
    start += warm["handed"]
    sampler = ConnectionSampler()
    sampler.start()
    groups = {"gunicorn": server.pid, "qcluster": cluster.pid}
    cpu_before = cpu_snapshot(groups, postmaster)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures, sample = run_wrk(
        wrk,
        base,
        spec,
        seconds=args.seconds,
        connections=connections,
        start=start,
        workdir=workdir,
        **clients,
    )
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = cpu_snapshot(groups, postmaster)
    sampler.stop()
    seconds = figures["duration_us"] / 1e6
    cpu = {key: (cpu_after[key] - cpu_before[key]) / seconds for key in cpu_before}
    cpu["wrk"] = (
        wrk_after.ru_utime - wrk_before.ru_utime + wrk_after.ru_stime - wrk_before.ru_stime
    ) / seconds
    result = {
        "scenario": name,
        "connections_used": connections,
        **summary(figures),
        "figures": figures,
        "sample": sample,
        "cpu": cpu,
        "connections": sampler.result(),
    }
    if callbacks:
        callbacks["next"] = start + figures["handed"]
        if callbacks["next"] > callbacks["count"]:
            raise SystemExit(f"{name}: more callbacks than deliveries; raise --callbacks")
        result.update(check_callbacks(callbacks, warm, figures, start))
    return result


def check_callbacks(callbacks: dict, warm: dict, figures: dict, start: int) -> dict:
    """Wait for the inbox to empty, then compare the deliveries delivered with the 200s."""
    from django.db import connection

    from campaigns import counters
    from providers.models import InboundCallback

    waited = time.monotonic()
    while InboundCallback.objects.filter(error="").exists():
        if time.monotonic() - waited > 600:
            raise SystemExit("the callback inbox did not empty within 10 minutes")
        time.sleep(0.2)
    drain_seconds = time.monotonic() - waited
    dead_letters = InboundCallback.objects.exclude(error="").count()
    # Numbers handed out: the warm-up's from callbacks["next"] before it, then this run's.
    first = start - warm["handed"]
    last = start + figures["handed"] - 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE status = 'delivered'),"
            " count(*) FILTER (WHERE status = 'delivered'"
            "   AND CAST(substr(provider_message_id, %s) AS bigint) NOT BETWEEN %s AND %s)"
            " FROM campaigns_delivery WHERE account_id = %s",
            [len(callbacks["prefix"]) + 1, first, last, callbacks["account_id"]],
        )
        delivered, stray = cursor.fetchone()
    # Answered 200 with "OK": every request minus the errors of both runs.
    acknowledged = sum(run["requests"] - errors(run) for run in (warm, figures))
    recount = counters.recount(callbacks["campaign_id"])
    stored = counters.counts(callbacks["campaign_id"])
    mismatches = sum(
        1 for key in set(recount) | set(stored) if recount.get(key, 0) != stored.get(key, 0)
    )
    connection.close()
    return {
        "acknowledged": acknowledged,
        "delivered": delivered,
        # In flight when wrk stopped: sent, maybe applied, never answered (at most one per connection).
        "unanswered": warm["handed"] + figures["handed"] - warm["requests"] - figures["requests"],
        "stray": stray,
        "lost": max(0, acknowledged - delivered),
        "drain_seconds": drain_seconds,
        "dead_letters": dead_letters,
        "counter_mismatches": mismatches,
    }


def print_scenario(r: dict) -> None:
    f, cpu, conns = r["figures"], r["cpu"], r["connections"]
    print(
        f"{r['scenario']} ({r['connections_used']} connections): {r['requests']} requests in "
        f"{r['seconds']:.1f} s = {r['rps']:,.0f}/s; "
        f"latency p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"max {r['max_ms']:.1f} ms"
    )
    print(
        f"  errors {r['errors']}: connect {f['connect']}, read {f['read']}, write {f['write']}, "
        f"timeout (>2 s) {f['timeout']}, HTTP not 200 {f['bad_status']}, wrong body "
        f"{f['bad_body']}" + (f"; first bad answer: {r['sample']}" if r["sample"] else "")
    )
    others = cpu["machine"] - sum(value for key, value in cpu.items() if key != "machine")
    print(
        f"  CPU (cores busy): gunicorn {cpu['gunicorn']:.2f}, qcluster {cpu['qcluster']:.2f}, "
        f"PostgreSQL {cpu['postgres']:.2f}, wrk {cpu['wrk']:.2f}, the rest (this process, "
        f"simulator, Redis) {others:.2f}; machine {cpu['machine']:.2f} of {os.cpu_count()}"
    )
    print(
        f"  PostgreSQL client connections: at most {conns['open_max']} open, "
        f"{conns['active_max']} running a query (mean {conns['active_mean']:.1f})"
    )
    if "lost" in r:
        print(
            f"  callbacks: {r['acknowledged']} answered 200 (warm-up included), "
            f"{r['delivered']} deliveries delivered, {r['unanswered']} in flight at the end, "
            f"lost {r['lost']}, stray {r['stray']}, dead letters {r['dead_letters']}; inbox empty "
            f"{r['drain_seconds']:.1f} s after the load; counter mismatches "
            f"{r['counter_mismatches']}"
        )


if __name__ == "__main__":
    main()

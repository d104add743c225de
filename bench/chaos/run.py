"""The run: arguments, set-up, the campaign under faults, the settling and the result line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time

from bench.chaos.checks import (
    OPEN_MESSAGE_STATUSES,
    accepted_sends,
    check,
    duplicate_addresses,
    duplicate_phones,
    failed,
    received_mails,
    replay_callbacks,
)
from bench.chaos.faults import (
    ChaosConfig,
    ChaosPulseSimulator,
    CountingGatewaySimulator,
    fault_schedule,
    quiet_disconnects,
    sim_config,
    sim_stats,
    track_requests,
)
from bench.chaos.harness import (
    STARTED,
    Processes,
    close_connection,
    db_errors,
    log,
    retrying,
)
from bench.chaos.workload import ConsentStream, Sweeper, create_campaign
from bench.common import free_port, machine, print_result
from bench.pg import TempPostgres, install_if_missing
from bench.redis_server import TempRedis
from providers.simulators.base import SimulatorConfig
from providers.simulators.smtp import SmtpSimulator


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

"""Fan-out and dispatch of one campaign through a real qcluster, PostgreSQL and a simulator.

    python -m bench.dispatch --recipients 100000

Uses DATABASE_URL if set (PostgreSQL), else starts a throw-away cluster. The
campaign goes Viber → SMS through the cascade gateway simulator (JSON, batch
200, 10% of Viber undeliverable so part of the audience falls through to SMS).
Prints fan-out speed beside a raw INSERT … SELECT of as many rows, the write
floor (a COPY of as many delivery rows and one UPDATE of their statuses, in the
same run on the same database), dispatch speed until the simulator has accepted
every message and dispatch_vs_write_floor (dispatch's time over the floor's), the time until 99% of
messages are final, and a naive one-task-per-message dispatch of 5,000
messages for comparison. The last line is one JSON object.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from bench.common import machine, print_result

NAIVE_MESSAGES = 5000


def wait(predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def naive_send_one(delivery_id: int) -> None:
    """One task per message: claim, render and send a single delivery (the comparison path)."""
    from campaigns import dispatch
    from campaigns.models import Delivery
    from providers.models import ProviderAccount

    delivery = Delivery.objects.only("account_id").get(pk=delivery_id)
    account = ProviderAccount.objects.get(pk=delivery.account_id)
    updated = Delivery.objects.filter(pk=delivery_id, status="queued").update(status="submitting")
    if updated:
        dispatch.send_batch(account, [delivery_id])


def write_floor(probe) -> float:
    """Seconds the database itself needs for dispatch's writes of as many messages.

    One COPY of a delivery row per probe message (queued, as fan-out writes them),
    then one UPDATE setting every one sent with a provider id, as the write-back
    does: the least any dispatcher could cost here, measured on the same database in
    the same run. The rows are the probe campaign's and go with it.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Delivery, Message

    message_ids = list(
        Message.objects.filter(campaign=probe).order_by("pk").values_list("pk", flat=True)
    )
    now = timezone.now()
    columns = (
        "operator_id, message_id, campaign_id, step, channel, account_id, status, "
        "idempotency_key, provider_message_id, parts, currency, error_code, error_message, "
        "native_channels, attempts, next_attempt_at, created_at, updated_at"
    )
    account_id = probe.operator.provider_accounts.values_list("pk", flat=True).first()
    started = time.perf_counter()
    table = Delivery._meta.db_table
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for message_id in message_ids:
            copy.write_row(
                [
                    probe.operator_id,
                    message_id,
                    probe.pk,
                    0,
                    "viber",
                    account_id,
                    "queued",
                    str(message_id * 100),
                    "",
                    1,
                    "",
                    "",
                    "",
                    "[]",
                    0,
                    now,
                    now,
                    now,
                ]
            )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = 'sent', "  # noqa: S608 - the model's own table
            "provider_message_id = idempotency_key, submitted_at = now(), attempts = 1, "
            "updated_at = now() WHERE campaign_id = %s",
            [probe.pk],
        )
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:  # before the probe's messages go, without the ORM
        cursor.execute(f"DELETE FROM {table} WHERE campaign_id = %s", [probe.pk])  # noqa: S608
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="workers per qcluster")
    parser.add_argument(
        "--clusters",
        type=int,
        default=1,
        help="qcluster processes; more than one needs REDIS_URL (a shared broker)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive comparison")
    parser.add_argument(
        "--sweep-after-dispatch",
        action="store_true",
        help="start the sweeper (status polls, cascade) only once the first step is out: "
        "dispatch alone on the cores",
    )
    args = parser.parse_args()

    temp_pg = None
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from bench.pg import TempPostgres

        temp_pg = TempPostgres()
        os.environ["DATABASE_URL"] = temp_pg.start()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ["Q_WORKERS"] = str(args.workers)
    if args.clusters > 1 and not os.environ.get("REDIS_URL"):
        raise SystemExit("--clusters > 1 needs REDIS_URL: the clusters share a Redis broker")
    clusters = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        result = run(args, clusters)
    finally:
        for cluster in clusters:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGTERM)
                try:
                    cluster.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(cluster.pid, signal.SIGKILL)
        if temp_pg:
            temp_pg.stop()
    print_result(result)


def run(args, clusters: list):
    from django.db import connection
    from django.utils import timezone

    from campaigns import fanout, services
    from campaigns.models import Campaign, Delivery, Message, MessageTemplate
    from clients.models import Operator
    from providers.models import ChannelRoute, ProviderAccount
    from providers.simulators.base import SimulatorConfig
    from providers.simulators.cascade_gateway import CascadeGatewaySimulator

    n = args.recipients
    print(
        f"bench.dispatch on {machine()}: {n} recipients, {args.clusters} qcluster(s) of {args.workers} workers, {connection.vendor}"
    )
    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(
            delivery_delay=0.5, outcome_mix={"delivered": 0.6, "read": 0.3, "undeliverable": 0.1}
        ),
    ).start()
    # A new operator each run: with a reused DATABASE_URL, earlier runs' clients stay out.
    operator = Operator.objects.create(code=f"bench-{time.time_ns()}", name="Bench")
    account = ProviderAccount.objects.create(
        operator=operator,
        name=f"Gateway {time.time()}",
        backend="cascade_gateway",
        base_url=sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber", "sms"],
        options={"flavour": "json"},
        sender_names={"viber": "Bench", "sms": "Bench"},
        max_batch=200,
    )
    for channel in ("viber", "sms"):
        ChannelRoute.objects.update_or_create(
            operator=operator, channel=channel, priority=1, defaults={"account": account}
        )
    template = MessageTemplate.objects.create(
        operator=operator,
        name=f"T{time.time()}",
        text="Hi {{ first_name }}",
        sms_text="Hi {{ first_name }}, sms",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name, middle_name, push_tokens,"
            " viber_id, vk_id, allow_sms, allow_email, allow_push, allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(79000000000 + g AS VARCHAR), '', 'Client' || g, '', '', '[]', '', '', TRUE, FALSE,"
            " FALSE, FALSE, now(), now() FROM generate_series(1, %s) g ON CONFLICT DO NOTHING",
            [operator.pk, n],
        )

    # The cluster is up and idle before the campaign starts, as in production.
    for _ in range(args.clusters):
        clusters.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                env=dict(os.environ),
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(5)

    # The database's own limit: one INSERT … SELECT of as many message rows.
    probe = Campaign.objects.create(
        operator=operator, name="probe", template=template, channels=["viber"]
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_message (operator_id, campaign_id, client_id, recipient_key, phone, email,"
            " purpose, title, text, variables, status, created_at, updated_at)"
            " SELECT operator_id, %s, id, 'client:' || id, phone, email, 'promotional', '', '', '{}', 'pending',"
            " now(), now() FROM clients_client WHERE operator_id = %s",
            [probe.pk, operator.pk],
        )
    insert_select_s = time.perf_counter() - started
    write_floor_s = write_floor(probe)
    print(
        f"write floor: COPY of {n} delivery rows and one UPDATE of their statuses "
        f"{write_floor_s:.2f} s ({n / write_floor_s:,.0f}/s)"
    )
    Message.objects.filter(campaign=probe).delete()

    campaign = Campaign.objects.create(
        operator=operator,
        name="bench",
        template=template,
        channels=["viber", "sms"],
        state=Campaign.State.RUNNING,
        launched_at=timezone.now(),
    )
    started = time.perf_counter()
    outcome = fanout.fan_out(campaign.pk)
    fanout_s = time.perf_counter() - started
    print(
        f"fan-out: {outcome.messages} messages in {fanout_s:.2f} s ({n / fanout_s:,.0f}/s); "
        f"raw INSERT … SELECT {insert_select_s:.2f} s; ratio {fanout_s / insert_select_s:.2f}"
    )

    # The sweeper polls statuses and moves the cascade; here it runs beside the cluster.
    stop_sweeping = threading.Event()
    # What the sweeper did while the workers dispatched: its status polls share the cores.
    sweeping = {"polled": 0, "seconds": 0.0}

    def sweeper():
        from django.db import connection as thread_connection

        while not stop_sweeping.is_set():
            pass_started = time.perf_counter()
            report = services.sweep_once()
            sweeping["seconds"] += time.perf_counter() - pass_started
            sweeping["polled"] += report["polled"]
            stop_sweeping.wait(1)
        thread_connection.close()

    launched = time.perf_counter()
    from campaigns import queue

    queue.kick_account(account.pk, workers=args.workers * args.clusters)
    sweeper_thread = threading.Thread(target=sweeper, daemon=True)
    if not args.sweep_after_dispatch:
        sweeper_thread.start()
    queued = outcome.queued
    wait(lambda: sim.stats()["accepted"] >= queued, timeout=600)
    dispatch_s = time.perf_counter() - launched
    polled_during_dispatch = sweeping["polled"]
    if args.sweep_after_dispatch:
        sweeper_thread.start()
    print(
        f"dispatch: {queued} first-step messages accepted in {dispatch_s:.2f} s ({queued / dispatch_s:,.0f}/s); "
        f"meanwhile the sweeper polled {polled_during_dispatch} deliveries' statuses in "
        f"{sweeping['seconds']:.1f} s of passes"
    )

    def final_share():
        open_count = Message.objects.filter(
            campaign=campaign, status__in=["pending", "in_progress"]
        ).count()
        return 1 - open_count / max(1, outcome.messages)

    wait(lambda: final_share() >= 0.99, timeout=900, interval=1)
    final_99_s = time.perf_counter() - launched
    wait(lambda: final_share() >= 1.0, timeout=180, interval=1)
    non_final = Message.objects.filter(
        campaign=campaign, status__in=["pending", "in_progress"]
    ).count()
    fell_through = Delivery.objects.filter(campaign=campaign, channel="sms").count()
    print(
        f"99% final after {final_99_s:.1f} s; {non_final} messages not final; {fell_through} fell through to SMS"
    )
    stop_sweeping.set()

    naive_rate = None
    if not args.skip_naive:
        # Naive path: one task per message.
        naive_campaign = Campaign.objects.create(
            operator=operator,
            name="naive",
            template=template,
            channels=["sms"],
            state=Campaign.State.RUNNING,
            segment={
                "clients": list(
                    __import__("clients.models", fromlist=["Client"])
                    .Client.objects.filter(operator=operator)
                    .order_by("pk")
                    .values_list("pk", flat=True)[:NAIVE_MESSAGES]
                )
            },
        )
        fanout.fan_out(naive_campaign.pk)
        ids = list(
            Delivery.objects.filter(campaign=naive_campaign, status="queued").values_list(
                "pk", flat=True
            )
        )
        from django_q.tasks import async_task

        before = sim.stats()["accepted"]
        started = time.perf_counter()
        for delivery_id in ids:
            async_task("bench.dispatch.naive_send_one", delivery_id)
        wait(lambda: sim.stats()["accepted"] - before >= len(ids), timeout=600)
        naive_s = time.perf_counter() - started
        naive_rate = len(ids) / naive_s
        print(f"naive one-task-per-message: {len(ids)} in {naive_s:.1f} s ({naive_rate:,.0f}/s)")
    sim.stop()
    return {
        "dispatch_vs_write_floor": round(dispatch_s / write_floor_s, 2),
        "recipients": n,
        "fanout_per_s": round(n / fanout_s),
        "fanout_vs_insert_select": round(fanout_s / insert_select_s, 2),
        "dispatch_per_s": round(queued / dispatch_s),
        "naive_per_s": round(naive_rate) if naive_rate else None,
        "clusters": args.clusters,
        "final_99_s": round(final_99_s, 1),
        "non_final": non_final,
        "polled_during_dispatch": polled_during_dispatch,
    }


if __name__ == "__main__":
    main()

"""One sweeper pass of all six triggers over a million clients, and the frequency cap's cost.

    python -m bench.triggers --clients 1000000 [--dispatch-recipients 100000]

Uses DATABASE_URL if it points at PostgreSQL, else starts a throw-away cluster.
Loads two operators in raw SQL: a small one (10,000 clients) and a large one
(--clients), each with a card per client (bonus expiring over the next year),
birthdays, registrations and last purchases spread over the past years, and
clients in five time zones. Each operator gets one running campaign per
trigger, launched two days ago. It then times sweeper passes
(triggers.run_due_triggers) and counts their queries, for both sizes: the
first pass (entering-the-segment takes its baseline), and a second one after
1% of the large operator's clients registered and bought.

Then the cap's cost on dispatch: a one-off campaign to --dispatch-recipients
clients dispatched in this process to a cascade gateway simulator (SMS),
first with no caps and then, to the same clients, with a cap of 5 a day, so
every recipient takes a slot in FrequencyLedger. Prints messages/s of both and
the slowdown. The last line is one JSON object.
"""

import argparse
import time

from bench.common import machine, print_result
from bench.pg import run_on_postgres

SMALL = 10_000
ZONES = ["Europe/Kaliningrad", "Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk", ""]


def load_clients(operator, count: int, phone_base: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name,"
            " middle_name, push_tokens, viber_id, vk_id, allow_sms, allow_email, allow_push,"
            " allow_email_online_cheque, birth_date, registered_at, last_purchase_at, time_zone,"
            " created_at, updated_at)"
            " SELECT %s, CAST(%s + g AS VARCHAR), '', 'Client' || g, '', '', '[]', '', '',"
            " TRUE, FALSE, FALSE, FALSE,"
            " DATE '1960-01-01' + CAST(g * 7919 %% 16000 AS INTEGER),"
            " now() - interval '1 minute' * (g * 131 %% (3 * 365 * 1440)),"
            " now() - interval '1 minute' * (g * 977 %% (400 * 1440)),"
            " (CAST(%s AS text[]))[1 + g %% 5], now(), now()"
            " FROM generate_series(CAST(1 AS BIGINT), %s) g",
            [operator.pk, phone_base, ZONES, count],
        )
        cursor.execute(
            "INSERT INTO clients_card (operator_id, client_id, number, bonus, status,"
            " bonus_expires_at, issued_at)"
            " SELECT operator_id, id, id, 100 + id %% 900, 'active',"
            " now() + interval '1 minute' * (id * 613 %% (365 * 1440)), now()"
            " FROM clients_client WHERE operator_id = %s",
            [operator.pk],
        )
        cursor.execute("ANALYZE clients_client")
        cursor.execute("ANALYZE clients_card")


def trigger_campaigns(operator, template, launched_at) -> None:
    from campaigns.models import Campaign

    params = {
        "registration": {"trigger_delay_minutes": 30},
        "birthday": {"trigger_local_hour": 0},
        "bonus_expiring": {"trigger_days": 7},
        "no_purchase": {"trigger_days": 60},
        "purchase": {"trigger_delay_minutes": 10},
        "entered_segment": {"segment": {"bonus_min": 500}},
    }
    for trigger, fields in params.items():
        Campaign.objects.create(
            operator=operator,
            name=f"On {trigger}",
            template=template,
            channels=["sms"],
            kind=Campaign.Kind.TRIGGER,
            trigger=trigger,
            state=Campaign.State.RUNNING,
            launched_at=launched_at,
            **fields,
        )


def timed_pass(operator_ids: list[int], now) -> dict:
    """One sweeper pass restricted to these operators' campaigns: seconds, queries, messages."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from campaigns import triggers
    from campaigns.models import Campaign

    Campaign.objects.filter(operator_id__in=operator_ids).update(triggers_checked_at=None)
    campaigns = Campaign.objects.filter(
        operator_id__in=operator_ids, kind="trigger", state="running"
    ).values_list("pk", "trigger")
    per_trigger = {}
    made = 0
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        for pk, trigger in campaigns:
            began = time.perf_counter()
            made += triggers.run_pass(pk, now)
            per_trigger[trigger] = round(time.perf_counter() - began, 2)
        seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "queries": len(queries),
        "messages": made,
        "seconds_per_trigger": per_trigger,
    }


def dispatch_speed(operator, account, template, recipients: int, caps_on: bool) -> float:
    from campaigns import dispatch, fanout
    from campaigns.models import Campaign, Delivery

    operator.cap_per_day = 5 if caps_on else 0
    operator.save(update_fields=["cap_per_day"])
    campaign = Campaign.objects.create(
        operator=operator,
        name=f"Blast caps={caps_on}",
        template=template,
        channels=["sms"],
        state=Campaign.State.RUNNING,
    )
    fanout.fan_out(campaign.pk)
    queued = Delivery.objects.filter(campaign=campaign, status__in=["queued", "submitting"])
    total = Delivery.objects.filter(campaign=campaign).count()
    started = time.perf_counter()
    while queued.exists():
        dispatch.dispatch_account(account.pk, budget_seconds=30)
    seconds = time.perf_counter() - started
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--dispatch-recipients", type=int, default=100_000)
    args = parser.parse_args()
    print_result(run_on_postgres(run, args))


def run(args) -> dict:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from campaigns.models import MessageTemplate
    from clients.models import Client, Operator
    from providers.models import ChannelRoute, ProviderAccount
    from providers.simulators.base import SimulatorConfig
    from providers.simulators.cascade_gateway import CascadeGatewaySimulator

    print(f"bench.triggers on {machine()}: {args.clients} clients, {connection.vendor}")
    stamp = time.time_ns()
    small = Operator.objects.create(code=f"small-{stamp}", name="Small")
    large = Operator.objects.create(code=f"large-{stamp}", name="Large")
    started = time.perf_counter()
    load_clients(small, SMALL, 70_000_000_000)
    load_clients(large, args.clients, 71_000_000_000)
    print(
        f"loaded {SMALL + args.clients} clients and cards in {time.perf_counter() - started:.1f} s"
    )
    now = timezone.now()
    for operator in (small, large):
        template = MessageTemplate.objects.create(operator=operator, name="T", text="Hi")
        trigger_campaigns(operator, template, now - timedelta(days=2))
    result = {"clients": args.clients}
    for label, operator in (("small", small), ("large", large)):
        first = timed_pass([operator.pk], now)
        print(f"first pass, {label}: {first}")
        result[f"first_pass_{label}"] = first
    # 1% of the large operator register and buy; the next pass catches them.
    moved = max(args.clients // 100, 1)
    later = now + timedelta(minutes=40)
    ids = list(
        Client.objects.filter(operator=large).order_by("pk").values_list("pk", flat=True)[:moved]
    )
    Client.objects.filter(pk__in=ids).update(registered_at=now, last_purchase_at=now)
    for label, operator in (("small", small), ("large", large)):
        second = timed_pass([operator.pk], later)
        print(f"second pass, {label}: {second}")
        result[f"second_pass_{label}"] = second

    sim = CascadeGatewaySimulator(
        config=SimulatorConfig(delivery_delay=5.0, outcome_mix={"delivered": 1.0}),
        identical_window=0,
    ).start()
    blast = Operator.objects.create(code=f"blast-{stamp}", name="Blast")
    load_clients(blast, args.dispatch_recipients, 72_000_000_000)
    account = ProviderAccount.objects.create(
        operator=blast,
        name="Gateway",
        backend="cascade_gateway",
        base_url=sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["sms"],
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"sms": "Bench"},
        max_batch=200,
    )
    ChannelRoute.objects.create(operator=blast, channel="sms", account=account, priority=1)
    template = MessageTemplate.objects.create(operator=blast, name="Blast", text="Hi")
    try:
        without = dispatch_speed(blast, account, template, args.dispatch_recipients, False)
        print(f"dispatch without caps: {without:.0f} messages/s")
        with_caps = dispatch_speed(blast, account, template, args.dispatch_recipients, True)
        print(f"dispatch with caps: {with_caps:.0f} messages/s")
    finally:
        sim.stop()
    result.update(
        dispatch_recipients=args.dispatch_recipients,
        dispatch_without_caps_per_s=round(without),
        dispatch_with_caps_per_s=round(with_caps),
        cap_slowdown_percent=round(100 * (1 - with_caps / without), 1),
    )
    return result


if __name__ == "__main__":
    main()

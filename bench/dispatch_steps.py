"""Each step's share of dispatching 10,000 messages: where a dispatcher's time goes.

    python -m bench.dispatch_steps [--messages 10000]

One Viber campaign through the cascade gateway simulator (JSON, batch 200), on
PostgreSQL from DATABASE_URL or a throw-away cluster, dispatched in this process
by `dispatch.dispatch_account` (what a qcluster worker runs) under cProfile. The
steps are the engine's own functions; each line is its cumulative time, in
milliseconds per 10,000 messages and as a share of the whole. The steps nest
(the write-back holds the select and the commit), so shares do not add up.
The last line is one JSON object of the shares.
"""

import argparse
import cProfile
import os
import pstats
import time

from bench.common import machine, print_result

# (label, module file, function): the dispatcher's steps, in the order a claim runs them.
STEPS = [
    ("claim (UPDATE … SKIP LOCKED)", "claims.py", "claim"),
    ("load the batch (deliveries, messages, clients)", "outgoing.py", "load_batch"),
    ("eligibility at send time", "outgoing.py", "send_time_skip_reason"),
    ("caps and quiet hours", "outgoing.py", "send_later"),
    ("render outgoing messages", "outgoing.py", "outgoing_for"),
    ("gateway request (HTTP, simulator)", "base.py", "send"),
    ("record results (status machine)", "outcomes.py", "record_results"),
    ("write back (UPDATE, events, counters, messages)", "outcomes.py", "commit_changes"),
    ("  bulk UPDATE of deliveries", "bulk.py", "bulk_update_deliveries"),
    ("  events INSERT", "bulk.py", "insert_events"),
    ("  message statuses", "outcomes.py", "settle_messages"),
    ("whole batch", "dispatch.py", "send_batch"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--dump", help="also save the profile here (for pstats or snakeviz)")
    args = parser.parse_args()
    temp_pg = None
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from bench.pg import TempPostgres

        temp_pg = TempPostgres()
        os.environ["DATABASE_URL"] = temp_pg.start()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["DEBUG"] = "0"  # no query log growing in memory
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        result = run(args.messages, args.dump)
    finally:
        if temp_pg:
            temp_pg.stop()
    print_result(result)


def run(n: int, dump: str | None = None) -> dict:
    from django.db import connection
    from django.utils import timezone

    from campaigns import dispatch, fanout
    from campaigns.models import Campaign, Delivery, MessageTemplate
    from clients.models import Operator
    from providers.models import ChannelRoute, ProviderAccount
    from providers.simulators.base import SimulatorConfig
    from providers.simulators.cascade_gateway import CascadeGatewaySimulator

    sim = CascadeGatewaySimulator(config=SimulatorConfig(delivery_delay=60)).start()
    operator = Operator.objects.create(code=f"steps-{time.time_ns()}", name="Bench steps")
    account = ProviderAccount.objects.create(
        operator=operator,
        name=f"Gateway {time.time_ns()}",
        backend="cascade_gateway",
        base_url=sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["viber"],
        options={"flavour": "json"},
        sender_names={"viber": "Bench"},
        max_batch=200,
    )
    ChannelRoute.objects.create(operator=operator, channel="viber", priority=1, account=account)
    template = MessageTemplate.objects.create(
        operator=operator, name=f"T{time.time_ns()}", text="Hi {{ first_name }}"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name,"
            " middle_name, push_tokens, viber_id, vk_id, allow_sms, allow_email, allow_push,"
            " allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(79100000000 + g AS VARCHAR), '', 'Client' || g, '', '', '[]', '',"
            " '', TRUE, FALSE, FALSE, FALSE, now(), now() FROM generate_series(1, %s) g",
            [operator.pk, n],
        )
    campaign = Campaign.objects.create(
        operator=operator,
        name="steps",
        template=template,
        channels=["viber"],
        state=Campaign.State.RUNNING,
        launched_at=timezone.now(),
    )
    fanout.fan_out(campaign.pk)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    sent = 0
    while sent < n:
        done = dispatch.dispatch_account(account.pk, budget_seconds=600)
        if not done:
            break
        sent += done
    profiler.disable()
    if dump:
        profiler.dump_stats(dump)
    seconds = time.perf_counter() - started
    sim.stop()
    left = Delivery.objects.filter(campaign=campaign, status="queued").count()

    stats = pstats.Stats(profiler).stats
    whole = stats_time(stats, "dispatch.py", "dispatch_account")
    scale = 10_000 / max(sent, 1) * 1000  # milliseconds per 10,000 messages
    print(f"bench.dispatch_steps on {machine()}: {sent} messages sent, {left} left queued")
    print(
        f"{seconds:.2f} s under cProfile ({sent / seconds:,.0f}/s; the profiler slows "
        "Python, not the database or the gateway)"
    )
    print(f"{'step':52} {'ms per 10,000':>14} {'share':>7}")
    shares = {}
    for label, module, function in STEPS:
        spent = stats_time(stats, module, function)
        shares[function] = round(spent / whole, 3)
        print(f"{label:52} {spent * scale:14,.0f} {spent / whole:7.1%}")
    print(f"{'dispatch_account (all of it)':52} {whole * scale:14,.0f} {1:7.0%}")
    return {
        "messages": sent,
        "left_queued": left,
        "per_s_profiled": round(sent / seconds),
        **shares,
    }


def stats_time(stats: dict, module: str, function: str) -> float:
    """Cumulative seconds of every function of that name in a file of that name."""
    return sum(
        values[3]
        for (path, _line, name), values in stats.items()
        if name == function and os.path.basename(path) == module
    )


if __name__ == "__main__":
    main()

"""Server time of the campaign pages for one large finished campaign.

    python -m bench.dashboard --recipients 100000

Uses DATABASE_URL if it points at PostgreSQL, else starts a throw-away
cluster. Builds one Viber → SMS campaign of N recipients in SQL the way the
engine leaves it after a run (90% of Viber delivered or read, 10%
undeliverable and fallen through to SMS, counters and costs recounted), then
times each page through Django's test client in this process: the time from
request to response, with the database on the same machine, which is the
"server time" a browser's network panel shows. The dashboard and stats.json
are timed with their cached scans cleared before each request (the first view
after the campaign moved); "dashboard, unchanged" repeats the view while
nothing moved (a finished campaign, polls between changes). The last line is
one JSON object with the dashboard's p50 / p95 in milliseconds and its query
count.
"""

import argparse
import os
import statistics
import time
from datetime import timedelta

from bench.common import machine, print_result
from bench.pg import run_on_postgres

ROUNDS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    print_result(run_on_postgres(run, args))


def build(n: int):
    """A finished campaign of n recipients, written in SQL as the engine would leave it."""
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.utils import timezone

    from campaigns import counters
    from campaigns.models import Campaign, CampaignCost, MessageTemplate
    from clients.groups import MARKETERS
    from clients.models import Operator, OperatorMember
    from providers.models import ChannelRoute, ProviderAccount

    stamp = time.time_ns()
    operator = Operator.objects.create(code=f"bench-{stamp}", name="Bench")
    account = ProviderAccount.objects.create(
        operator=operator,
        name="Gateway",
        backend="cascade_gateway",
        channels=["viber", "sms"],
        cost_per_part="0.35",
    )
    for channel in ("viber", "sms"):
        ChannelRoute.objects.create(operator=operator, channel=channel, account=account)
    template = MessageTemplate.objects.create(
        operator=operator, name="T", text="Hi {{ first_name }}", sms_text="Hi {{ first_name }}"
    )
    now = timezone.now()
    campaign = Campaign.objects.create(
        operator=operator,
        name="Big",
        template=template,
        channels=["viber", "sms"],
        state=Campaign.State.DONE,
        launched_at=now,
        fanned_out_at=now,
        finished_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (operator_id, phone, email, first_name, last_name,"
            " middle_name, push_tokens, viber_id, vk_id, allow_sms, allow_email, allow_push,"
            " allow_email_online_cheque, created_at, updated_at)"
            " SELECT %s, CAST(78000000000 + g AS VARCHAR), '', 'Client' || g, '', '', '[]', '',"
            " '', TRUE, FALSE, FALSE, FALSE, now(), now() FROM generate_series(1, %s) g",
            [operator.pk, n],
        )
        cursor.execute(
            "INSERT INTO campaigns_message (operator_id, campaign_id, client_id, recipient_key,"
            " phone, email, purpose, title, text, variables, status, created_at, updated_at)"
            " SELECT operator_id, %s, id, 'client:' || id, phone, '', 'promotional', '', '', '{}',"
            " CASE WHEN id %% 3 = 0 THEN 'read' ELSE 'delivered' END, %s, %s"
            " FROM clients_client WHERE operator_id = %s",
            [campaign.pk, now, now, operator.pk],
        )
        common = (
            "operator_id, message_id, campaign_id, step, channel, account_id, status,"
            " idempotency_key, provider_message_id, parts, price, currency, error_code,"
            " error_message, native_channels, attempts, created_at, updated_at, final_at"
        )
        # Viber for everyone: one in ten undeliverable.
        cursor.execute(
            f"INSERT INTO campaigns_delivery ({common})"  # noqa: S608 - fixed column list
            " SELECT operator_id, id, campaign_id, 0, 'viber', %s,"
            " CASE WHEN id %% 10 = 0 THEN 'undeliverable' WHEN id %% 3 = 0 THEN 'read'"
            " ELSE 'delivered' END, CAST(id * 100 AS VARCHAR), 'v' || id, 1, 0.35, 'RUB',"
            " CASE WHEN id %% 10 = 0 THEN 'not_viber_user' ELSE '' END, '', '[]', 1, %s, %s, %s"
            " FROM campaigns_message WHERE campaign_id = %s",
            [account.pk, now, now, now, campaign.pk],
        )
        # The undeliverable tenth fell through to SMS a moment later.
        later = now + timedelta(seconds=30)
        cursor.execute(
            f"INSERT INTO campaigns_delivery ({common})"  # noqa: S608 - fixed column list
            " SELECT operator_id, id, campaign_id, 1, 'sms', %s, 'delivered',"
            " CAST(id * 100 + 1 AS VARCHAR), 's' || id, 1, 0.35, 'RUB', '', '', '[]', 1, %s, %s, %s"
            " FROM campaigns_message WHERE campaign_id = %s AND id %% 10 = 0",
            [account.pk, later, later, later, campaign.pk],
        )
        cursor.execute("ANALYZE campaigns_delivery; ANALYZE campaigns_message")
    for (channel, status), count in counters.recount(campaign.pk).items():
        counters.bump({(campaign.pk, channel, status): count})
    for (channel, currency), amount in counters.recost(campaign.pk).items():
        CampaignCost.objects.create(
            campaign=campaign, channel=channel, currency=currency, amount=amount
        )
    user = User.objects.create_user(f"bench-{stamp}")  # force_login below: no password
    user.groups.add(Group.objects.get(name=MARKETERS))
    OperatorMember.objects.create(operator=operator, user=user)
    return campaign, user


def run(args) -> dict:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    n = args.recipients
    print(f"bench.dashboard on {machine()}: {n} recipients, {connection.vendor}")
    started = time.perf_counter()
    campaign, user = build(n)
    print(f"built the campaign in {time.perf_counter() - started:.1f} s")
    browser = Client(SERVER_NAME="localhost")  # an allowed host with DEBUG on
    browser.force_login(user)
    dashboard_url = f"/campaigns/{campaign.pk}/"
    pages = {
        # The first view after a change: the cached scans cleared before each request.
        "dashboard": dashboard_url,
        # Views while nothing moved (a finished campaign, polls between changes).
        "dashboard, unchanged": dashboard_url,
        "stats.json": f"/campaigns/{campaign.pk}/stats.json",
        "campaign list": "/campaigns/",
        "messages": f"/campaigns/{campaign.pk}/messages/",
        "preview": f"/campaigns/{campaign.pk}/preview/",
    }
    figures = {}
    for name, url in pages.items():
        browser.get(url)  # warm caches and the session, as a user already on the site
        timings = []
        for _ in range(args.rounds):
            if name in ("dashboard", "stats.json"):
                cache.clear()
            t0 = time.perf_counter()
            response = browser.get(url)
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        if name in ("dashboard", "stats.json"):
            cache.clear()
        with CaptureQueriesContext(connection) as queries:
            browser.get(url)
        timings.sort()
        figures[name] = {
            "p50_ms": round(statistics.median(timings), 1),
            "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 1),
            "queries": len(queries.captured_queries),
        }
        print(
            f"{name:>20}: p50 {figures[name]['p50_ms']:6.1f} ms, p95 "
            f"{figures[name]['p95_ms']:6.1f} ms, {figures[name]['queries']} queries"
        )
    dashboard = figures["dashboard"]
    return {
        "recipients": n,
        "dashboard_p50_ms": dashboard["p50_ms"],
        "dashboard_p95_ms": dashboard["p95_ms"],
        "dashboard_queries": dashboard["queries"],
        "stats_json_p50_ms": figures["stats.json"]["p50_ms"],
        "dashboard_unchanged_p50_ms": figures["dashboard, unchanged"]["p50_ms"],
        "pages": figures,
    }


if __name__ == "__main__":
    main()

"""Campaign counters: status counts per channel and cost, kept by deltas.

Every transaction that changes delivery statuses adds its deltas here in one
statement, so the counts stay equal to a recount of the delivery rows (the
chaos suite checks exactly that) and the dashboard reads a few rows.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum

StatusKey = tuple[int, str, str]  # campaign id, channel, status


def bump(deltas: Counter[StatusKey]) -> None:
    rows = sorted((key, delta) for key, delta in deltas.items() if delta and key[0] is not None)
    if not rows:
        return
    # Sorted rows: concurrent transactions lock counter rows in the same order.
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params = [
        item
        for (campaign, channel, status), delta in rows
        for item in (campaign, channel, status, delta)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_campaigncounter (campaign_id, channel, status, count) "  # noqa: S608 - only %s placeholders are built
            f"VALUES {values} "
            "ON CONFLICT (campaign_id, channel, status) "
            "DO UPDATE SET count = campaigns_campaigncounter.count + EXCLUDED.count",
            params,
        )


def add_costs(costs: dict[tuple[int, str, str], Decimal]) -> None:
    rows = sorted((key, amount) for key, amount in costs.items() if amount and key[0] is not None)
    if not rows:
        return
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params = [
        item
        for (campaign, channel, currency), amount in rows
        for item in (campaign, channel, currency, amount)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_campaigncost (campaign_id, channel, currency, amount) "  # noqa: S608 - only %s placeholders are built
            f"VALUES {values} "
            "ON CONFLICT (campaign_id, channel, currency) "
            "DO UPDATE SET amount = campaigns_campaigncost.amount + EXCLUDED.amount",
            params,
        )


def transition(
    deltas: Counter[StatusKey], campaign_id, channel: str, old: str | None, new: str
) -> None:
    if campaign_id is None or old == new:
        return
    if old:
        deltas[(campaign_id, channel, old)] -= 1
    deltas[(campaign_id, channel, new)] += 1


def counts(campaign_id: int) -> dict[tuple[str, str], int]:
    from campaigns.models import CampaignCounter

    return {
        (row.channel, row.status): row.count
        for row in CampaignCounter.objects.filter(campaign_id=campaign_id).exclude(count=0)
    }


def recount(campaign_id: int) -> dict[tuple[str, str], int]:
    """The truth the counters must equal: a GROUP BY over the delivery rows."""
    from campaigns.models import Delivery

    rows = (
        Delivery.objects.filter(campaign_id=campaign_id)
        .values("channel", "status")
        .annotate(n=Count("id"))
    )
    return {(row["channel"], row["status"]): row["n"] for row in rows}


def recost(campaign_id: int) -> dict[tuple[str, str], Decimal]:
    from campaigns.models import Delivery

    rows = (
        Delivery.objects.filter(campaign_id=campaign_id, price__isnull=False)
        .values("channel", "currency")
        .annotate(total=Sum("price"))
    )
    return {(row["channel"], row["currency"]): row["total"] for row in rows}

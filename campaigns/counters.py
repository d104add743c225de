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

from campaigns.models import CampaignCost, CampaignCounter, Delivery

StatusKey = tuple[int, str, str]  # campaign id, channel, status


def _upsert_add(table: str, key_columns: tuple[str, str, str], value_column: str, rows) -> None:
    """Add each row's value to its counter row, creating it at zero first; one statement.

    Rows are sorted so concurrent transactions lock counter rows in the same order.
    """
    rows = sorted((key, value) for key, value in rows if value and key[0] is not None)
    if not rows:
        return
    columns = ", ".join((*key_columns, value_column))
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params = [item for key, value in rows for item in (*key, value)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608 - our own names only
            f"ON CONFLICT ({', '.join(key_columns)}) "
            f"DO UPDATE SET {value_column} = {table}.{value_column} + EXCLUDED.{value_column}",
            params,
        )


def bump(deltas: Counter[StatusKey]) -> None:
    _upsert_add(
        CampaignCounter._meta.db_table,
        ("campaign_id", "channel", "status"),
        "count",
        deltas.items(),
    )


def add_costs(costs: dict[tuple[int, str, str], Decimal]) -> None:
    _upsert_add(
        CampaignCost._meta.db_table, ("campaign_id", "channel", "currency"), "amount", costs.items()
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
    return {
        (row.channel, row.status): row.count
        for row in CampaignCounter.objects.filter(campaign_id=campaign_id).exclude(count=0)
    }


def recount(campaign_id: int) -> dict[tuple[str, str], int]:
    """The truth the counters must equal: a GROUP BY over the delivery rows."""
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id)
        .values("channel", "status")
        .annotate(n=Count("id"))
    )
    return {(row["channel"], row["status"]): row["n"] for row in rows}


def recost(campaign_id: int) -> dict[tuple[str, str], Decimal]:
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id, price__isnull=False)
        .values("channel", "currency")
        .annotate(total=Sum("price"))
    )
    return {(row["channel"], row["currency"]): row["total"] for row in rows}

"""The dashboard chart's data: deliveries, reads, clicks and cost over time.

A one-off campaign is counted per minute from its launch (per hour once it has
run longer than MAX_BUCKETS minutes); a triggered or recurring one per day of
the operator's calendar over the last DAYS days. Each series is one metric for
one variant and one channel, so the page can add them up by variant or by
channel without asking again. Every bucket is listed, empty ones as zero.

Four grouped queries whatever the campaign's size: delivered (by delivered_at),
read (by read_at), cost (by submitted_at, when the gateway charged) and
clicks (LinkClick.first_clicked_at: one click per message, as the table).
Costs are one line per currency: amounts in two currencies are never added up.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from campaigns import labels
from campaigns.models import Campaign, Delivery, LinkClick

MAX_BUCKETS = 360
DAYS = 30
STEPS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def buckets(campaign: Campaign, now: datetime) -> tuple[str, list[datetime]]:
    """The chart's unit and the start of each of its buckets, in the operator's zone."""
    zone = zoneinfo.ZoneInfo(campaign.operator.time_zone)
    if campaign.launched_at is None:
        return "minute", []
    if campaign.kind != Campaign.Kind.ONE_OFF:
        today = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        return "day", [_local_day(today, offset) for offset in range(-(DAYS - 1), 1)]
    end = min(now, campaign.finished_at or now)
    start = campaign.launched_at
    unit = "minute" if end - start <= timedelta(minutes=MAX_BUCKETS) else "hour"
    first = _floor(start.astimezone(zone), unit)
    last = _floor(end.astimezone(zone), unit)
    starts = []
    moment = first
    while moment <= last and len(starts) <= MAX_BUCKETS:
        starts.append(moment)
        moment += STEPS[unit]
    return unit, starts


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if unit == "hour" else moment


def _local_day(today: datetime, offset: int) -> datetime:
    # Day by day on the calendar (not 24 h steps), so a DST change cannot shift the buckets.
    day = (today + timedelta(days=offset)).date()
    return datetime(day.year, day.month, day.day, tzinfo=today.tzinfo)


def timeline(campaign: Campaign, *, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    unit, starts = buckets(campaign, now)
    zone = zoneinfo.ZoneInfo(campaign.operator.time_zone)
    result = {
        "unit": unit,
        "zone": campaign.operator.time_zone,
        "buckets": [start.isoformat() for start in starts],
        "labels": [_label(start, unit, starts) for start in starts],
        "series": [],
        "costs": [],
    }
    if not starts:
        return result
    position = {start: index for index, start in enumerate(starts)}
    since = starts[0]
    # A recurring campaign's messages belong to its runs.
    ours = Q(campaign=campaign) | Q(campaign__parent=campaign)
    if campaign.kind != Campaign.Kind.RECURRING:
        ours = Q(campaign=campaign)
    deliveries = Delivery.objects.filter(ours).order_by()
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * len(starts))
    for metric, column in (("delivered", "delivered_at"), ("read", "read_at")):
        rows = (
            deliveries.filter(**{f"{column}__gte": since})
            .annotate(bucket=Trunc(column, unit, tzinfo=zone))
            .values("bucket", "channel", "message__variant__label")
            .annotate(n=Count("id"))
        )
        for row in rows:
            index = position.get(_aware(row["bucket"], zone))
            if index is not None:
                key = (metric, row["message__variant__label"] or "", row["channel"])
                counts[key][index] += row["n"]
    clicks = (
        LinkClick.objects.filter(ours, first_clicked_at__gte=since)
        .order_by()
        .annotate(bucket=Trunc("first_clicked_at", unit, tzinfo=zone))
        .values("bucket", "channel", "variant__label")
        .annotate(n=Count("message_id"))
    )
    for row in clicks:
        index = position.get(_aware(row["bucket"], zone))
        if index is not None:
            counts[("clicked", row["variant__label"] or "", row["channel"])][index] += row["n"]
    costs = (
        deliveries.filter(submitted_at__gte=since, price__isnull=False)
        .annotate(bucket=Trunc("submitted_at", unit, tzinfo=zone))
        .values("bucket", "currency")
        .annotate(amount=Sum("price"))
    )
    amounts: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(starts))
    for row in costs:
        index = position.get(_aware(row["bucket"], zone))
        if index is not None:
            amounts[row["currency"] or ""][index] += row["amount"]
    # One line per currency: amounts in two currencies are never added up.
    result["costs"] = [
        {"currency": currency, "amounts": [float(amount) for amount in values]}
        for currency, values in sorted(amounts.items())
    ]
    result["series"] = [
        {
            "metric": metric,
            "variant": variant,
            "channel": channel,
            "channel_label": labels.channel_label(channel),
            "counts": values,
        }
        for (metric, variant, channel), values in sorted(counts.items())
    ]
    return result


def _aware(bucket: datetime, zone) -> datetime:
    # SQLite hands back naive local times for a Trunc with tzinfo; PostgreSQL aware ones.
    if timezone.is_naive(bucket):
        return bucket.replace(tzinfo=zone)
    return bucket.astimezone(zone)


def _label(start: datetime, unit: str, starts: list[datetime]) -> str:
    if unit == "day":
        return start.strftime("%d.%m")
    spans_days = starts[0].date() != starts[-1].date()
    return start.strftime("%d.%m %H:%M" if spans_days else "%H:%M")

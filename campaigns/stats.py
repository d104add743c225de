"""The numbers the campaign pages show, read in a fixed handful of queries.

Progress and outcomes count messages (one per recipient: its status is its
last step's); the funnel, per-channel breakdown and costs count deliveries
(one per cascade step) from the counters the engine keeps, so a page load
costs the same for 100 or 1,000,000 recipients except for the two grouped
reads noted below.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns import counters, labels
from campaigns.models import Campaign, CampaignCost, Delivery, Message
from clients import formats
from providers.status import FAILURE_STATUSES, DeliveryStatus

FINAL_MESSAGE_STATUSES = {
    Message.Status.DELIVERED,
    Message.Status.READ,
    Message.Status.FAILED,
    Message.Status.SKIPPED,
    Message.Status.CANCELLED,
}
# Deliveries the gateway accepted, whatever happened next.
REACHED_GATEWAY = {
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.UNDELIVERABLE,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.UNKNOWN,
}
NOT_STARTED = {DeliveryStatus.SKIPPED, DeliveryStatus.CANCELLED}


def message_counts(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """Messages per status for each campaign: one grouped query over an index."""
    result: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Message.objects.filter(campaign_id__in=campaign_ids)
        .values_list("campaign_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for campaign_id, status, n in rows:
        result[campaign_id][status] = n
    return result


def costs(campaign_ids: list[int]) -> dict[int, dict[str, Decimal]]:
    """Cost so far per campaign and currency."""
    result: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in CampaignCost.objects.filter(campaign_id__in=campaign_ids).values_list(
        "campaign_id", "currency", "amount"
    ):
        campaign_id, currency, amount = row
        result[campaign_id][currency] += amount
    return result


def summary(statuses: dict[str, int]) -> dict:
    total = sum(statuses.values())
    final = sum(n for status, n in statuses.items() if status in FINAL_MESSAGE_STATUSES)
    return {
        "recipients": total,
        "final": final,
        "progress": round(100 * final / total, 1) if total else 0.0,
        "delivered": statuses.get(Message.Status.DELIVERED, 0)
        + statuses.get(Message.Status.READ, 0),
        "read": statuses.get(Message.Status.READ, 0),
        "failed": statuses.get(Message.Status.FAILED, 0),
        "skipped": statuses.get(Message.Status.SKIPPED, 0),
        "cancelled": statuses.get(Message.Status.CANCELLED, 0),
        "in_progress": total - final,
    }


def list_rows(campaigns: list[Campaign]) -> list[dict]:
    """What the campaign list shows for each campaign of a page: two queries in all."""
    ids = [campaign.pk for campaign in campaigns]
    counts = message_counts(ids)
    spent = costs(ids)
    return [
        {
            "campaign": campaign,
            **summary(counts.get(campaign.pk, {})),
            "cost": dict(spent.get(campaign.pk, {})),
        }
        for campaign in campaigns
    ]


def _scans(campaign: Campaign, by_channel_status: dict) -> tuple[dict[str, int], list[tuple]]:
    """Messages per status, and failures and fall-throughs grouped by channel, status, reason."""
    state = repr(
        (
            campaign.state,
            campaign.created_at,
            campaign.fanned_out_at,
            sorted(by_channel_status.items()),
        )
    )
    digest = hashlib.sha1(state.encode(), usedforsecurity=False).hexdigest()
    key = f"cascade:dashboard:{campaign.pk}:{digest}"
    found = cache.get(key)
    if found is not None:
        return found
    # One grouped read for two things: failures by reason, and the steps the
    # cascade created after fan-out (each is a recipient who fell through).
    failure_like = [*FAILURE_STATUSES, DeliveryStatus.SKIPPED]
    later_step = Q(step__gt=0) & ~Q(created_at=campaign.fanned_out_at)
    grouped = list(
        Delivery.objects.filter(Q(status__in=failure_like) | later_step, campaign_id=campaign.pk)
        .values_list("channel", "status", "error_code")
        .annotate(
            failed=Count("id", filter=Q(status__in=failure_like)),
            fell=Count("id", filter=later_step),
        )
        .order_by()
    )
    found = (message_counts([campaign.pk]).get(campaign.pk, {}), grouped)
    cache.set(key, found, timeout=600)
    return found


def dashboard(campaign: Campaign) -> dict:
    """Everything the live dashboard draws, JSON-ready. Four queries, two when nothing moved.

    Messages per status and the grouped read of failures and fall-throughs
    scan one campaign's rows (about 100 ms of database time at 100,000
    recipients); the rest are counters. Every change those scans could see
    also moves a counter in the same transaction, so their result is cached
    under the counters' state: a finished campaign, or viewers polling
    between changes, cost two small reads, and nothing shown is ever stale.
    """
    by_channel_status = counters.counts(campaign.pk)
    message_statuses, grouped = _scans(campaign, by_channel_status)
    outcome = summary(message_statuses)
    channels = list(campaign.channels)
    for channel, _status in by_channel_status:
        if channel not in channels:
            channels.append(channel)
    per_channel = []
    for channel in channels:
        statuses = {s: n for (c, s), n in by_channel_status.items() if c == channel}
        per_channel.append(
            {
                "channel": channel,
                "channel_label": labels.channel_label(channel),
                "total": sum(statuses.values()),
                "waiting": sum(
                    statuses.get(s, 0)
                    for s in (
                        DeliveryStatus.PENDING,
                        DeliveryStatus.QUEUED,
                        DeliveryStatus.SUBMITTING,
                    )
                ),
                "sent": sum(n for s, n in statuses.items() if s in REACHED_GATEWAY),
                "delivered": statuses.get(DeliveryStatus.DELIVERED, 0)
                + statuses.get(DeliveryStatus.READ, 0),
                "read": statuses.get(DeliveryStatus.READ, 0),
                "failed": sum(n for s, n in statuses.items() if s in FAILURE_STATUSES),
                "skipped": statuses.get(DeliveryStatus.SKIPPED, 0),
                "fell_through_here": 0,
            }
        )

    fell: dict[str, int] = defaultdict(int)
    failures = []
    for channel, status, code, failed, fell_here in grouped:
        fell[channel] += fell_here
        if failed:
            failures.append(
                {
                    "channel": channel,
                    "channel_label": labels.channel_label(channel),
                    "status": status,
                    "status_label": labels.status_label(status),
                    "reason": code or status,
                    "reason_label": labels.reason_label(code)
                    if code
                    else labels.status_label(status),
                    "count": failed,
                }
            )
    failures.sort(key=lambda row: -row["count"])
    for row in per_channel:
        row["fell_through_here"] = fell.get(row["channel"], 0)

    all_statuses: dict[str, int] = defaultdict(int)
    for (_channel, status), n in by_channel_status.items():
        all_statuses[status] += n
    funnel = [
        {
            "stage": "queued",
            "count": sum(n for s, n in all_statuses.items() if s not in NOT_STARTED),
        },
        {"stage": "sent", "count": sum(all_statuses.get(s, 0) for s in REACHED_GATEWAY)},
        {
            "stage": "delivered",
            "count": all_statuses.get(DeliveryStatus.DELIVERED, 0)
            + all_statuses.get(DeliveryStatus.READ, 0),
        },
        {"stage": "read", "count": all_statuses.get(DeliveryStatus.READ, 0)},
    ]

    spent = costs([campaign.pk]).get(campaign.pk, {})
    return {
        "id": campaign.pk,
        "state": campaign.state,
        "state_label": campaign.get_state_display(),
        **outcome,
        "funnel": funnel,
        "channels": per_channel,
        "failures": failures[:20],
        "cost": {currency: f"{amount:.2f}" for currency, amount in spent.items()},
        # In the reader's language (117,30 ₽), so the page's script need not know money formats.
        "cost_text": " · ".join(
            formats.money(amount, currency) for currency, amount in spent.items()
        )
        or "0",
        "finished": campaign.state in (Campaign.State.DONE, Campaign.State.CANCELLED),
    }


def sends_per_day(campaign: Campaign, *, days: int = 30, now=None) -> list[dict]:
    """A triggered campaign's messages per day (operator's calendar) over the last `days` days.

    Every day is listed, empty ones as zero, so the chart's bars line up with dates.
    Each bar's height is a share of the busiest day, for the page's plain bar chart.
    """
    zone = zoneinfo.ZoneInfo(campaign.operator.time_zone)
    today = (now or timezone.now()).astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time(0), tzinfo=zone)
    rows = (
        Message.objects.filter(campaign=campaign, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day")
        .annotate(
            messages=Count("id"),
            delivered=Count(
                "id", filter=Q(status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.READ])
            ),
        )
        .order_by()
    )
    by_day = {row["day"]: row for row in rows}
    busiest = max([row["messages"] for row in rows] or [0]) or 1
    chart = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {"messages": 0, "delivered": 0})
        chart.append(
            {
                "day": day.isoformat(),
                "messages": row["messages"],
                "delivered": row["delivered"],
                "height": round(100 * row["messages"] / busiest),
            }
        )
    return chart

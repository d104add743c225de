"""Send windows: a campaign that may only send between, say, 09:00 and 21:00.

Times are each client's local time (clients/zones.py: the client's zone, else
the operator's): a 09:00-21:00 window opens in Vladivostok seven hours before
Moscow. A window may run over midnight (22:00 to 06:00). While it is shut in
every zone the operator's clients live in, claims skip the campaign and the
sweeper moves its queued deliveries to the earliest opening, so no worker spins
on work it may not do; while it is open somewhere, dispatch sends to the
clients whose own clock is inside it and puts the rest back in the queue until
their window opens (wait_for_window). TTLs keep running while a message waits.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from campaigns.models import Campaign, Delivery
from clients.zones import is_valid_zone, zones_in_use
from providers.status import DeliveryStatus


def is_open(start: time, end: time, local: time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end  # over midnight


def next_opening(now: datetime, start: time, end: time, zone: str) -> datetime:
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    if is_open(start, end, local.time()):
        return now
    opening = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if opening <= local:
        opening += timedelta(days=1)
    return opening


def client_opening(now: datetime, campaign, client_zone: str, operator_zone: str) -> datetime:
    """When this campaign may send to a client in `client_zone` (now, if it may now)."""
    if campaign is None or campaign.send_window_start is None:
        return now
    zone = client_zone if client_zone and is_valid_zone(client_zone) else operator_zone
    return next_opening(now, campaign.send_window_start, campaign.send_window_end, zone)


def closed_campaigns(now: datetime) -> dict[int, datetime]:
    """Running campaigns whose window is shut in every client zone, with the first opening.

    One small query, and the operators' zone lists from the cache.
    """
    rows = Campaign.objects.filter(
        state=Campaign.State.RUNNING, send_window_start__isnull=False
    ).values_list(
        "pk", "send_window_start", "send_window_end", "operator_id", "operator__time_zone"
    )
    closed = {}
    for pk, start, end, operator_id, operator_zone in rows:
        opening = min(
            next_opening(now, start, end, zone) for zone in zones_in_use(operator_id, operator_zone)
        )
        if opening != now:
            closed[pk] = opening
    return closed


def hold_outside_windows(now: datetime) -> int:
    """Move queued deliveries of shut campaigns to their window's opening; returns rows moved."""
    moved = 0
    for campaign_id, opening in closed_campaigns(now).items():
        moved += Delivery.objects.filter(
            campaign_id=campaign_id,
            status=DeliveryStatus.QUEUED,
            next_attempt_at__lt=opening,
        ).update(next_attempt_at=opening)
    return moved

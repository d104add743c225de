"""Send windows: a campaign that may only send between, say, 09:00 and 21:00.

Times are the operator's local time (clients carry no time zone of their own;
an operator's audience lives in its time zone). A window may run over
midnight (22:00 to 06:00). Outside it, claims skip the campaign and the sweeper
moves its queued deliveries' next attempt to the next opening, so no worker
spins on work it may not do. TTLs keep running while a message waits.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from campaigns.models import Campaign, Delivery
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


def closed_campaigns(now: datetime) -> dict[int, datetime]:
    """Running campaigns whose window is shut now, with when it opens. One small query."""
    rows = Campaign.objects.filter(
        state=Campaign.State.RUNNING, send_window_start__isnull=False
    ).values_list("pk", "send_window_start", "send_window_end", "operator__time_zone")
    closed = {}
    for pk, start, end, zone in rows:
        opening = next_opening(now, start, end, zone)
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

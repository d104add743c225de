"""Recurring campaigns: daily, weekly or monthly at a time of day, each run its own campaign.

A recurring campaign never sends itself. When a run falls due the sweeper copies
it into a child one-off campaign (parent = it, launched at once), which fans out
and finishes like any other, with its own counters; the dashboard lists the
runs. Runs missed while nothing was running (a stopped cluster) are not
replayed: one run catches up and the next is counted from now. The parent's
row lock with SKIP LOCKED lets only one sweeper start a given run.
"""

from __future__ import annotations

import calendar
import zoneinfo
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import formats

from campaigns import queue
from campaigns.models import Campaign

COPIED_FIELDS = (
    "operator_id",
    "template_id",
    "purpose",
    "channels",
    "audience_kind",
    "segment",
    "send_window_start",
    "send_window_end",
    "ttl_minutes",
    "read_is_final",
    "cap_per_day",
    "cap_per_week",
    "cap_min_gap_minutes",
    "source",
    "created_by_id",
)


def next_run(campaign: Campaign, after: datetime) -> datetime:
    """The first run time strictly after `after`, in the operator's zone."""
    zone = zoneinfo.ZoneInfo(campaign.operator.time_zone)
    local = after.astimezone(zone)
    at = campaign.recurrence_time
    day = local.date()
    for _ in range(400):  # a monthly run is at most 31 days away; 400 is a safe bound
        candidate = datetime.combine(day, at, tzinfo=zone)
        if candidate > local and _runs_on(campaign, day):
            return candidate
        day += timedelta(days=1)
    raise ValueError(f"campaign {campaign.pk} has no run day")


def _runs_on(campaign: Campaign, day) -> bool:
    if campaign.recurrence == Campaign.Recurrence.WEEKLY:
        return day.weekday() == (campaign.recurrence_day or 0)
    if campaign.recurrence == Campaign.Recurrence.MONTHLY:
        wanted = min(campaign.recurrence_day or 1, calendar.monthrange(day.year, day.month)[1])
        return day.day == wanted
    return True


def start_due_runs(now: datetime) -> list[int]:
    """Start every recurring campaign's run that is due; returns the runs' ids."""
    due = Campaign.objects.filter(
        kind=Campaign.Kind.RECURRING, state=Campaign.State.RUNNING, next_run_at__lte=now
    ).values_list("pk", flat=True)
    return [run for pk in due if (run := start_run(pk, now)) is not None]


def start_run(campaign_id: int, now: datetime) -> int | None:
    with transaction.atomic():
        parent = (
            Campaign.objects.select_for_update(no_key=True, skip_locked=True)
            .select_related("operator")
            .filter(
                pk=campaign_id,
                kind=Campaign.Kind.RECURRING,
                state=Campaign.State.RUNNING,
                next_run_at__lte=now,
            )
            .first()
        )
        if parent is None:
            return None  # another sweeper has it, or it was paused meanwhile
        local = now.astimezone(zoneinfo.ZoneInfo(parent.operator.time_zone))
        run = Campaign.objects.create(
            name=f"{parent.name[:170]} · {formats.date_format(local, 'SHORT_DATETIME_FORMAT')}",
            parent=parent,
            kind=Campaign.Kind.ONE_OFF,
            state=Campaign.State.RUNNING,
            launched_at=now,
            **{name: getattr(parent, name) for name in COPIED_FIELDS},
        )
        parent.next_run_at = next_run(parent, now)
        parent.save(update_fields=["next_run_at"])
        transaction.on_commit(lambda: queue.enqueue_fan_out(run.pk))
    return run.pk

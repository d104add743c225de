"""Recurring campaigns: run times in the operator's zone, one child campaign per run."""

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest

from campaigns import fanout, recurring, services
from campaigns.models import Campaign, Message, MessageTemplate
from clients.models import Client
from tests.campaigns.driving import make_clients

pytestmark = pytest.mark.usefixtures("no_background_tasks")

MOSCOW = zoneinfo.ZoneInfo("Europe/Moscow")


@pytest.fixture
def weekly(sunrise):
    template = MessageTemplate.objects.create(operator=sunrise, name="T", text="Hi")
    return Campaign.objects.create(
        operator=sunrise,
        name="Monday deals",
        template=template,
        channels=["sms"],
        kind=Campaign.Kind.RECURRING,
        recurrence=Campaign.Recurrence.WEEKLY,
        recurrence_day=0,
        recurrence_time=time(10, 0),
    )


def local(*args):
    return datetime(*args, tzinfo=MOSCOW)


def test_run_times_are_in_the_operators_zone_and_strictly_after(weekly):
    # Sunday 2026-12-06 12:00 Moscow: the next Monday 10:00.
    assert recurring.next_run(weekly, local(2026, 12, 6, 12, 0)) == local(2026, 12, 7, 10, 0)
    assert recurring.next_run(weekly, local(2026, 12, 7, 10, 0)) == local(2026, 12, 14, 10, 0)
    weekly.recurrence = Campaign.Recurrence.DAILY
    assert recurring.next_run(weekly, local(2026, 12, 7, 9, 59)) == local(2026, 12, 7, 10, 0)
    weekly.recurrence, weekly.recurrence_day = Campaign.Recurrence.MONTHLY, 28
    assert recurring.next_run(weekly, local(2026, 2, 28, 11, 0)) == local(2026, 3, 28, 10, 0)


def test_each_run_is_a_child_campaign_with_its_own_fan_out_and_counters(weekly, sunrise, setup):
    make_clients(sunrise, 3, allow_sms=True)
    launched = services.launch(campaign_id=weekly.pk)
    assert launched.state == Campaign.State.RUNNING
    assert fanout.fan_out(weekly.pk).messages == 0  # the parent itself never sends
    first_at = launched.next_run_at
    assert first_at.astimezone(MOSCOW).weekday() == 0
    assert recurring.start_due_runs(first_at - timedelta(seconds=1)) == []
    [run] = recurring.start_due_runs(first_at)
    assert recurring.start_due_runs(first_at) == []  # next_run_at moved on a week
    weekly.refresh_from_db()
    assert weekly.next_run_at == first_at + timedelta(days=7)
    child = Campaign.objects.get(pk=run)
    assert (child.parent_id, child.kind, child.state) == (weekly.pk, "one_off", "running")
    assert fanout.fan_out(child.pk).messages == 3
    Client.objects.create(operator=sunrise, phone="79169999999", allow_sms=True)
    [second] = recurring.start_due_runs(weekly.next_run_at)
    assert fanout.fan_out(second).messages == 4
    assert Message.objects.filter(campaign_id=run).count() == 3
    assert list(weekly.runs.order_by("pk").values_list("pk", flat=True)) == [run, second]


def test_a_paused_recurring_campaign_starts_no_run(weekly):
    services.launch(campaign_id=weekly.pk)
    services.pause(campaign_id=weekly.pk)
    assert recurring.start_due_runs(datetime(2030, 1, 1, tzinfo=UTC)) == []


def test_a_weekly_campaign_needs_its_day_and_time(weekly):
    from django.core.exceptions import ValidationError

    weekly.recurrence_time = None
    with pytest.raises(ValidationError, match="time of day"):
        services.validate_for_launch(weekly)

"""Frequency caps across campaigns, over the real engine and simulators, and under a race."""

import threading
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns import caps, fanout, triggers
from campaigns.models import Campaign, Delivery, FrequencyLedger
from clients.channels import Purpose
from clients.models import Client
from providers.models import ChannelRoute
from providers.status import DeliveryStatus
from tests.campaigns.driving import campaign_for, drive

pytestmark = pytest.mark.usefixtures("no_background_tasks")


def sms_campaign(setup, **fields):
    campaign = campaign_for(setup, ["sms"], **fields)
    fanout.fan_out(campaign.pk)
    assert drive(campaign, [setup["gateway"]])
    return Delivery.objects.get(campaign=campaign)


def sms_sent_to(sim, phone):
    with sim.lock:
        return [m for m in sim.messages.values() if phone in str(m.request)]


@pytest.fixture
def capped(setup):
    operator = setup["operator"]
    operator.cap_per_day = 1
    operator.save()
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    client = Client.objects.create(
        operator=operator, phone="79160000001", first_name="Ann", allow_sms=True
    )
    return setup, client


def test_a_daily_cap_skips_the_next_promotional_message_of_another_campaign(capped):
    setup, client = capped
    first = sms_campaign(setup)
    assert first.status == DeliveryStatus.DELIVERED
    second = sms_campaign(setup)
    assert (second.status, second.error_code) == (DeliveryStatus.SKIPPED, caps.SKIP_REASON)
    assert len(sms_sent_to(setup["gateway_sim"], client.phone)) == 1
    ledger = FrequencyLedger.objects.get(client=client, channel="sms")
    assert ledger.day_count == 1


def test_service_messages_and_a_campaign_that_lifts_the_cap_are_not_capped(capped):
    setup, client = capped
    sms_campaign(setup)
    service = sms_campaign(setup, purpose=Purpose.SERVICE)
    assert service.status == DeliveryStatus.DELIVERED
    uncapped = sms_campaign(setup, cap_per_day=0)
    assert uncapped.status == DeliveryStatus.DELIVERED
    assert len(sms_sent_to(setup["gateway_sim"], client.phone)) == 3


def test_a_client_without_consent_takes_no_slot(capped):
    setup, client = capped
    Client.objects.filter(pk=client.pk).update(allow_sms=False)
    campaign = campaign_for(setup, ["sms"])
    fanout.fan_out(campaign.pk)
    assert not FrequencyLedger.objects.exists()


def test_a_capped_trigger_waits_for_the_next_local_day(capped):
    setup, client = capped
    # The client lives far from the operator (Moscow). Both sends must fall on one of
    # the client's days, whatever the hour the suite runs at: a zone whose midnight is
    # hours away (Vladivostok's is 14:00 UTC, New York's 05:00 UTC).
    zone_name = next(
        name
        for name in ("Asia/Vladivostok", "America/New_York")
        if 1 <= timezone.now().astimezone(zoneinfo.ZoneInfo(name)).hour <= 22
    )
    Client.objects.filter(pk=client.pk).update(time_zone=zone_name)
    sms_campaign(setup)
    now = timezone.now()
    Client.objects.filter(pk=client.pk).update(registered_at=now - timedelta(minutes=5))
    campaign = campaign_for(
        setup,
        ["sms"],
        kind=Campaign.Kind.TRIGGER,
        trigger=Campaign.Trigger.REGISTRATION,
        launched_at=now - timedelta(days=1),
    )
    assert triggers.run_pass(campaign.pk, now) == 1
    drive(campaign, [setup["gateway"]], seconds=2)
    delivery = Delivery.objects.get(campaign=campaign)
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.error_message == caps.SKIP_REASON
    assert delivery.attempts == 0
    local = delivery.next_attempt_at.astimezone(zoneinfo.ZoneInfo(zone_name))
    assert (local.hour, local.minute) == (0, 0)
    assert delivery.next_attempt_at > now
    assert len(sms_sent_to(setup["gateway_sim"], client.phone)) == 1


MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def take(client, at, limits, channel="sms"):
    return caps.take_slots([(1, client.pk, channel, "Europe/Moscow", limits)], at) == {1}


def test_weekly_cap_resets_on_monday_and_the_gap_counts_from_the_last_message(sunrise):
    client = Client.objects.create(operator=sunrise, phone="79160000002")
    weekly = caps.Caps(per_week=2)
    assert take(client, MONDAY, weekly)
    assert take(client, MONDAY + timedelta(days=1), weekly)
    assert not take(client, MONDAY + timedelta(days=2), weekly)
    assert take(client, MONDAY + timedelta(days=7), weekly)
    assert take(client, MONDAY, weekly, channel="viber")  # caps are per channel
    gap = caps.Caps(min_gap_minutes=60)
    later = MONDAY + timedelta(days=10)
    assert take(client, later, gap)
    assert not take(client, later + timedelta(minutes=30), gap)
    assert take(client, later + timedelta(minutes=61), gap)


def test_one_batch_with_the_same_client_twice_counts_both(sunrise):
    client = Client.objects.create(operator=sunrise, phone="79160000003")
    limits = caps.Caps(per_day=1)
    rows = [(n, client.pk, "sms", "Europe/Moscow", limits) for n in (1, 2, 3)]
    assert len(caps.take_slots(rows, MONDAY)) == 1


@pytest.mark.django_db(transaction=True)
def test_dispatchers_racing_for_one_client_cannot_both_slip_under_the_cap(sunrise):
    """Eight connections take a slot at the same instant, each holding its transaction
    open a moment: with a daily cap of 2, exactly two get one."""
    client = Client.objects.create(operator=sunrise, phone="79160000004")
    limits = caps.Caps(per_day=2)
    start = threading.Barrier(8)
    granted = []

    def dispatcher(n):
        try:
            start.wait()
            with transaction.atomic():
                got = caps.take_slots([(n, client.pk, "sms", "Europe/Moscow", limits)], MONDAY)
                granted.extend(got)
                threading.Event().wait(0.2)  # the other dispatchers queue on the row lock
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert connection.vendor == "postgresql"  # the suite's database: the race is real
    assert len(granted) == 2
    assert FrequencyLedger.objects.get(client=client).day_count == 2

"""Send windows: open and shut in the operator's time, over midnight, and held by the sweeper."""

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from campaigns import claims, dispatch, fanout, windows
from campaigns.models import Campaign, Delivery, Message, MessageTemplate
from clients.models import Client
from providers.models import ChannelRoute, ProviderAccount
from providers.status import DeliveryStatus
from tests.campaigns.driving import campaign_for


def test_a_day_window_is_open_inside_and_shut_outside():
    assert windows.is_open(time(9), time(21), time(9))
    assert not windows.is_open(time(9), time(21), time(21))
    assert not windows.is_open(time(9), time(21), time(3))


def test_a_window_over_midnight_wraps():
    assert windows.is_open(time(22), time(6), time(23, 30))
    assert windows.is_open(time(22), time(6), time(5, 59))
    assert not windows.is_open(time(22), time(6), time(12))


def test_the_next_opening_is_today_or_tomorrow_in_the_operators_zone():
    # 05:00 UTC is 08:00 in Moscow: the 09:00 window opens in an hour.
    now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    opening = windows.next_opening(now, time(9), time(21), "Europe/Moscow")
    assert opening - now == timedelta(hours=1)
    # 19:00 UTC is 22:00 in Moscow: shut until 09:00 tomorrow.
    late = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    assert windows.next_opening(late, time(9), time(21), "Europe/Moscow") - late == timedelta(
        hours=11
    )
    inside = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert windows.next_opening(inside, time(9), time(21), "Europe/Moscow") == inside


@pytest.fixture
def shut_campaign(sunrise):
    """A running campaign whose window is shut right now, with one queued delivery."""
    local_now = timezone.now().astimezone(zoneinfo.ZoneInfo(sunrise.time_zone))
    start = (local_now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (local_now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    template = MessageTemplate.objects.create(operator=sunrise, name="T", text="x")
    campaign = Campaign.objects.create(
        operator=sunrise,
        name="Night",
        template=template,
        channels=["sms"],
        state=Campaign.State.RUNNING,
        send_window_start=start,
        send_window_end=end,
    )
    account = ProviderAccount.objects.create(
        operator=sunrise, name="Gateway", backend="cascade_gateway", channels=["sms"]
    )
    message = Message.objects.create(operator=sunrise, campaign=campaign, recipient_key="k")
    delivery = Delivery.objects.create(
        operator=sunrise,
        message=message,
        campaign=campaign,
        channel="sms",
        account=account,
        idempotency_key="100",
        status=DeliveryStatus.QUEUED,
        next_attempt_at=timezone.now(),
    )
    return campaign, account, delivery


def test_claims_skip_a_campaign_outside_its_window(shut_campaign):
    campaign, account, delivery = shut_campaign
    assert claims.claim(account.pk, 10) == []
    Campaign.objects.filter(pk=campaign.pk).update(send_window_start=None, send_window_end=None)
    assert claims.claim(account.pk, 10) == [delivery.pk]


def test_the_sweeper_holds_waiting_deliveries_until_the_window_opens(shut_campaign):

    _campaign, account, delivery = shut_campaign
    assert windows.hold_outside_windows(timezone.now()) == 1
    held = Delivery.objects.get(pk=delivery.pk).next_attempt_at
    assert held > timezone.now() + timedelta(minutes=59)
    assert not claims.has_due_work(account.pk)


def test_a_window_applies_in_each_clients_own_zone_with_a_frozen_clock():
    # 02:00 UTC: 13:00 in Vladivostok, 05:00 in Moscow, 04:00 in Kaliningrad.
    now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    campaign = Campaign(send_window_start=time(10), send_window_end=time(20))
    assert windows.client_opening(now, campaign, "Asia/Vladivostok", "Europe/Moscow") == now
    moscow = windows.client_opening(now, campaign, "", "Europe/Moscow")  # the operator's zone
    kaliningrad = windows.client_opening(now, campaign, "Europe/Kaliningrad", "Europe/Moscow")
    assert moscow == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # 10:00 Moscow
    assert kaliningrad == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 10:00 Kaliningrad
    # A zone nobody knows falls back to the operator's rather than failing the batch.
    assert windows.client_opening(now, campaign, "Mars/Olympus", "Europe/Moscow") == moscow


@pytest.mark.usefixtures("no_background_tasks")
def test_dispatch_sends_where_the_window_is_open_and_holds_the_rest_until_theirs(setup):

    operator = setup["operator"]
    ChannelRoute.objects.filter(channel="sms").update(account=setup["gateway"])
    setup["gateway_sim"].config.outcome_mix = {"delivered": 1.0}
    zones = {
        "79160000001": "Asia/Vladivostok",
        "79160000002": "",
        "79160000003": "Europe/Kaliningrad",
    }
    for phone, zone in zones.items():
        Client.objects.create(operator=operator, phone=phone, allow_sms=True, time_zone=zone)
    far_east = timezone.now().astimezone(zoneinfo.ZoneInfo("Asia/Vladivostok"))
    start = (far_east - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (far_east + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    campaign = campaign_for(setup, ["sms"], send_window_start=start, send_window_end=end)
    fanout.fan_out(campaign.pk)
    dispatch.dispatch_account(setup["gateway"].pk, budget_seconds=2)
    rows = {
        d.message.phone: d
        for d in Delivery.objects.filter(campaign=campaign).select_related("message")
    }
    assert rows["79160000001"].status == DeliveryStatus.SENT
    for phone, zone in (("79160000002", "Europe/Moscow"), ("79160000003", "Europe/Kaliningrad")):
        held = rows[phone]
        assert held.status == DeliveryStatus.QUEUED
        local = held.next_attempt_at.astimezone(zoneinfo.ZoneInfo(zone))
        assert local.time() == start
    with setup["gateway_sim"].lock:
        sent = [str(m.request) for m in setup["gateway_sim"].messages.values()]
    assert len(sent) == 1 and "79160000001" in sent[0]

"""Triggered campaigns over the real engine: each trigger kind fires once per occurrence.

The passes run with an explicit `now` (a frozen clock); delivery goes over the
wire to the cascade gateway simulator.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import counters, services, triggers
from campaigns.models import Campaign, Message, MessageTemplate
from clients.models import Card, Client, Tag
from providers.models import ChannelRoute, ProviderAccount
from tests.campaigns.driving import drive

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("no_background_tasks")


@pytest.fixture
def gateway(sunrise, gateway_sim):
    gateway_sim.config.outcome_mix = {"delivered": 1.0}
    account = ProviderAccount.objects.create(
        operator=sunrise,
        name="Gateway",
        backend="cascade_gateway",
        base_url=gateway_sim.url,
        credentials={"login": "demo", "password": "demo-pass"},
        channels=["sms"],
        options={"flavour": "json", "identical_request_seconds": 0},
        sender_names={"sms": "Shop"},
        max_batch=500,
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=account, priority=1)
    return account


def trigger_campaign(operator, trigger, launched_at=NOW - timedelta(days=2), **fields):
    template = MessageTemplate.objects.create(
        operator=operator, name=f"T {trigger}", text="Hi {{ first_name }}"
    )
    return Campaign.objects.create(
        operator=operator,
        name=f"On {trigger}",
        template=template,
        channels=["sms"],
        kind=Campaign.Kind.TRIGGER,
        trigger=trigger,
        launched_at=launched_at,
        **{"state": Campaign.State.RUNNING, **fields},
    )


def client(operator, n, **fields):
    fields.setdefault("allow_sms", True)
    return Client.objects.create(
        operator=operator, phone=f"7916{n:07d}", first_name=f"C{n}", **fields
    )


def pass_at(campaign, now):
    return triggers.run_pass(campaign.pk, now)


def recipients(campaign):
    return sorted(Message.objects.filter(campaign=campaign).values_list("client__phone", flat=True))


def test_registration_greets_once_after_the_delay_and_never_before_launch(sunrise, gateway):
    campaign = trigger_campaign(sunrise, "registration", trigger_delay_minutes=30)
    ready = client(sunrise, 1, registered_at=NOW - timedelta(minutes=31))
    too_soon = client(sunrise, 2, registered_at=NOW - timedelta(minutes=5))
    client(sunrise, 3, registered_at=NOW - timedelta(days=30))  # long before launch
    assert pass_at(campaign, NOW) == 1
    assert recipients(campaign) == [ready.phone]
    # Next pass: the first one is not greeted again; the second's delay has passed.
    assert pass_at(campaign, NOW + timedelta(minutes=30)) == 1
    assert recipients(campaign) == sorted([ready.phone, too_soon.phone])
    assert pass_at(campaign, NOW + timedelta(hours=2)) == 0
    assert counters.counts(campaign.pk) == counters.recount(campaign.pk)


def test_a_pass_within_the_interval_does_nothing_and_the_key_is_a_database_constraint(
    sunrise, gateway
):
    campaign = trigger_campaign(sunrise, "registration")
    client(sunrise, 1, registered_at=NOW - timedelta(minutes=1))
    assert pass_at(campaign, NOW) == 1
    Client.objects.update(registered_at=NOW)
    assert pass_at(campaign, NOW + timedelta(seconds=10)) == 0  # the interval has not passed
    # Even evaluated again on purpose, the occurrence inserts nothing.
    campaign.refresh_from_db()
    assert triggers.insert_occurrences(campaign, NOW + timedelta(minutes=5)) == 0
    message = Message.objects.get(campaign=campaign)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            operator=sunrise, campaign=campaign, recipient_key=message.recipient_key
        )


def test_without_consent_the_occurrence_is_skipped_with_the_reason_and_not_retried(
    sunrise, gateway
):
    campaign = trigger_campaign(sunrise, "registration")
    client(sunrise, 1, registered_at=NOW - timedelta(minutes=1), allow_sms=False)
    pass_at(campaign, NOW)
    message = Message.objects.get(campaign=campaign)
    assert message.status == Message.Status.SKIPPED
    assert message.deliveries.get().error_code == "no_consent"
    assert pass_at(campaign, NOW + timedelta(minutes=2)) == 0


def test_paused_campaigns_do_not_fire_and_running_ones_never_finish(sunrise, gateway):
    campaign = trigger_campaign(sunrise, "registration", state=Campaign.State.PAUSED)
    client(sunrise, 1, registered_at=NOW - timedelta(minutes=1))
    assert triggers.run_due_triggers(NOW) == 0
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    assert triggers.run_due_triggers(NOW) == 1
    Message.objects.filter(campaign=campaign).update(status=Message.Status.DELIVERED)
    services.finish_campaigns(NOW)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING


def test_birthday_reaches_each_time_zone_at_its_own_local_hour_once_a_year(sunrise, gateway):
    assert sunrise.time_zone == "Europe/Moscow"
    birthday = date(1990, 12, 6)
    vladivostok = client(sunrise, 1, birth_date=birthday, time_zone="Asia/Vladivostok")  # UTC+10
    moscow = client(sunrise, 2, birth_date=birthday)  # the operator's zone, UTC+3
    kaliningrad = client(sunrise, 3, birth_date=birthday, time_zone="Europe/Kaliningrad")  # +2
    client(sunrise, 4, birth_date=date(1990, 12, 7), time_zone="Asia/Vladivostok")  # tomorrow
    campaign = trigger_campaign(sunrise, "birthday", trigger_local_hour=10)
    day = datetime(2026, 12, 6, tzinfo=UTC)
    assert pass_at(campaign, day + timedelta(minutes=30)) == 1  # 10:30 in Vladivostok
    assert recipients(campaign) == [vladivostok.phone]
    assert pass_at(campaign, day + timedelta(hours=7, minutes=5)) == 1  # 10:05 in Moscow
    assert pass_at(campaign, day + timedelta(hours=7, minutes=30)) == 0  # 09:30 in Kaliningrad
    assert pass_at(campaign, day + timedelta(hours=8, minutes=1)) == 1  # 10:01 in Kaliningrad
    assert recipients(campaign) == sorted([vladivostok.phone, moscow.phone, kaliningrad.phone])
    assert pass_at(campaign, day + timedelta(hours=20)) == 0  # still the 6th in Kaliningrad
    # A year later, again.
    next_year = datetime(2027, 12, 6, 8, 30, tzinfo=UTC)
    assert pass_at(campaign, next_year) == 3


def test_birthday_days_before_and_february_29_in_a_common_year(sunrise, gateway):
    leap = client(sunrise, 1, birth_date=date(2000, 2, 29))
    campaign = trigger_campaign(sunrise, "birthday", trigger_days=3, trigger_local_hour=9)
    # 2027 is a common year: the 29th is greeted as the 28th, three days before.
    assert pass_at(campaign, datetime(2027, 2, 25, 7, 0, tzinfo=UTC)) == 1  # 10:00 Moscow
    assert recipients(campaign) == [leap.phone]
    assert Message.objects.get(campaign=campaign).recipient_key == f"birthday:2027:{leap.pk}"


def test_bonus_expiring_fires_once_per_expiry_of_a_card(sunrise, gateway):
    holder = client(sunrise, 1)
    card = Card.objects.create(
        operator=sunrise,
        client=holder,
        number=100,
        bonus=150,
        bonus_expires_at=NOW + timedelta(days=3),
    )
    far = client(sunrise, 2)
    Card.objects.create(
        operator=sunrise,
        client=far,
        number=101,
        bonus=80,
        bonus_expires_at=NOW + timedelta(days=30),
    )
    empty = client(sunrise, 3)
    Card.objects.create(
        operator=sunrise,
        client=empty,
        number=102,
        bonus=0,
        bonus_expires_at=NOW + timedelta(days=1),
    )
    campaign = trigger_campaign(sunrise, "bonus_expiring", trigger_days=7)
    assert pass_at(campaign, NOW) == 1
    message = Message.objects.get(campaign=campaign)
    assert message.client == holder
    assert message.variables["expiring_bonus"] in (150, "150", "150.00", 150.0)
    assert pass_at(campaign, NOW + timedelta(days=1)) == 0
    # The next batch of points gets its own expiry, and its own reminder.
    card.bonus_expires_at = NOW + timedelta(days=40)
    card.save()
    assert pass_at(campaign, NOW + timedelta(days=34)) == 1
    assert Message.objects.filter(campaign=campaign, client=holder).count() == 2


def test_no_purchase_fires_once_per_lapse(sunrise, gateway):
    lapsing = client(sunrise, 1, last_purchase_at=NOW - timedelta(days=60, hours=1))
    client(sunrise, 2, last_purchase_at=NOW - timedelta(days=10))  # still active
    client(sunrise, 3, last_purchase_at=NOW - timedelta(days=400))  # lapsed long before launch
    never = client(sunrise, 4, registered_at=NOW - timedelta(days=60, minutes=5))
    campaign = trigger_campaign(sunrise, "no_purchase", trigger_days=60)
    assert pass_at(campaign, NOW) == 2
    assert recipients(campaign) == sorted([lapsing.phone, never.phone])
    assert pass_at(campaign, NOW + timedelta(hours=1)) == 0
    # The client comes back, then lapses again: a second win-back.
    Client.objects.filter(pk=lapsing.pk).update(last_purchase_at=NOW + timedelta(days=1))
    later = NOW + timedelta(days=61, minutes=10)
    assert pass_at(campaign, later) == 1
    assert Message.objects.filter(campaign=campaign, client=lapsing).count() == 2


def test_purchase_thanks_after_the_delay_for_each_purchase(sunrise, gateway):
    buyer = client(sunrise, 1, last_purchase_at=NOW - timedelta(minutes=20))
    client(sunrise, 2, last_purchase_at=NOW - timedelta(minutes=5))
    campaign = trigger_campaign(sunrise, "purchase", trigger_delay_minutes=15)
    assert pass_at(campaign, NOW) == 1
    assert recipients(campaign) == [buyer.phone]
    Client.objects.filter(pk=buyer.pk).update(last_purchase_at=NOW + timedelta(minutes=1))
    assert pass_at(campaign, NOW + timedelta(minutes=10)) == 1  # the other buyer's turn
    assert pass_at(campaign, NOW + timedelta(minutes=20)) == 1  # the buyer's second purchase
    assert Message.objects.filter(campaign=campaign, client=buyer).count() == 2


def test_entered_segment_fires_for_newcomers_only_and_again_after_leaving(sunrise, gateway):
    vip = Tag.objects.create(operator=sunrise, name="vip")
    already = client(sunrise, 1)
    already.tags.add(vip)
    campaign = trigger_campaign(sunrise, "entered_segment", segment={"tags": ["vip"]})
    assert pass_at(campaign, NOW) == 0  # the members at launch are the baseline
    newcomer = client(sunrise, 2)
    newcomer.tags.add(vip)
    assert pass_at(campaign, NOW + timedelta(minutes=1)) == 1
    assert recipients(campaign) == [newcomer.phone]
    assert pass_at(campaign, NOW + timedelta(minutes=2)) == 0
    newcomer.tags.remove(vip)
    assert pass_at(campaign, NOW + timedelta(minutes=3)) == 0
    newcomer.tags.add(vip)
    assert pass_at(campaign, NOW + timedelta(minutes=4)) == 1
    assert Message.objects.filter(campaign=campaign, client=newcomer).count() == 2


def test_a_trigger_is_narrowed_by_the_segment(sunrise, gateway):
    vip = Tag.objects.create(operator=sunrise, name="vip")
    inside = client(sunrise, 1, registered_at=NOW - timedelta(minutes=1))
    inside.tags.add(vip)
    client(sunrise, 2, registered_at=NOW - timedelta(minutes=1))
    campaign = trigger_campaign(sunrise, "registration", segment={"tags": ["vip"]})
    assert pass_at(campaign, NOW) == 1
    assert recipients(campaign) == [inside.phone]


def test_other_operators_clients_are_never_caught(sunrise, northwind, gateway):
    client(northwind, 1, registered_at=NOW - timedelta(minutes=1))
    campaign = trigger_campaign(sunrise, "registration")
    assert pass_at(campaign, NOW) == 0


def test_triggered_messages_go_over_the_wire_once(sunrise, gateway, gateway_sim):
    now = timezone.now()
    for n in range(3):
        client(sunrise, n, registered_at=now - timedelta(minutes=2))
    campaign = trigger_campaign(sunrise, "registration", launched_at=now - timedelta(hours=1))
    services.sweep_once()  # the sweeper runs the pass
    assert Message.objects.filter(campaign=campaign).count() == 3
    assert drive(campaign, [gateway])
    services.sweep_once()
    assert Message.objects.filter(campaign=campaign).count() == 3
    with gateway_sim.lock:
        assert sorted(gateway_sim.key_submissions.values()) == [1, 1, 1]
    assert set(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) <= {
        "delivered",
        "read",
        "failed",
    }
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING

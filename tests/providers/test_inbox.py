"""The webhook's inbox: stored before the 200, applied in batches, nothing left behind."""

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from campaigns.models import Delivery, DeliveryEvent
from providers import inbox
from providers.base import StatusEvent
from providers.models import InboundCallback, ProviderAccount
from providers.status import DeliveryStatus


@pytest.fixture
def pulse(world):
    account = ProviderAccount.objects.create(
        operator=world["operator"],
        name="Pulse",
        backend="pulse",
        channels=["sms", "viber"],
        callback_secrets=["pulse-secret-0123456789"],
    )
    delivery = world["delivery"]
    Delivery.objects.filter(pk=delivery.pk).update(account=account, provider_message_id="p-1")
    return account


def other_connection() -> psycopg.Connection:
    """A second session on the test database, as another process's drainer would hold."""
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
    )


def callback(client, account, message_id, status="delivered"):
    return client.get(
        f"/providers/webhooks/pulse/{account.pk}/pulse-secret-0123456789/",
        {"id": message_id, "status": status},
    )


def report(message_id, status=DeliveryStatus.DELIVERED, provider_status=""):
    return StatusEvent(
        status=status, provider_status=provider_status or status, provider_message_id=message_id
    )


def test_reports_survive_the_trip_through_json():
    event = StatusEvent(
        status=DeliveryStatus.DELIVERED,
        provider_status="DELIVRD",
        provider_message_id="m-1",
        idempotency_key="k-1",
        channel="sms",
        occurred_at=datetime(2026, 11, 23, 10, 30, 5, 120000, tzinfo=UTC),
        price=Decimal("0.3500"),
        currency="RUB",
        parts=2,
        error_message="",
        raw="?id=m-1&status=DELIVRD",
    )
    bare = StatusEvent(status=DeliveryStatus.SENT, provider_status="sent", idempotency_key="k-2")
    assert inbox.from_json(inbox.as_json([event, bare])) == [event, bare]


def test_a_callback_is_applied_before_its_answer_when_nobody_else_drains(client, world, pulse):
    assert callback(client, pulse, "p-1").status_code == 200
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED
    assert not InboundCallback.objects.exists()


def test_a_callback_about_nothing_we_know_is_not_kept(client, pulse):
    assert callback(client, pulse, "no-such-id").status_code == 200
    assert not InboundCallback.objects.exists()
    assert inbox.store_callback(pulse.pk, [StatusEvent(status="sent", provider_status="x")]) is None


@pytest.mark.django_db(transaction=True)
def test_while_another_drainer_holds_the_lock_the_callback_waits_in_the_inbox(client, world, pulse):
    with other_connection() as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [inbox.DRAIN_LOCK])
        assert callback(client, pulse, "p-1").status_code == 200
        # Answered at once: the row is committed, the other drainer owns applying it.
        assert InboundCallback.objects.count() == 1
        assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.SENT
        other.rollback()
    assert inbox.drain_callbacks() == 1
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED
    assert not InboundCallback.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_task_waits_a_bounded_time_for_the_lock_and_then_drains(world, pulse, monkeypatch):
    monkeypatch.setattr(inbox, "_hand_over", lambda: None)
    inbox.store_callback(pulse.pk, [report("p-1")])
    with other_connection() as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [inbox.DRAIN_LOCK])
        # Held for longer than the task may wait: it gives up, the row stays.
        assert inbox.drain_callbacks(wait_for_lock=0.2) == 0
        assert InboundCallback.objects.count() == 1
        other.rollback()
    assert inbox.drain_callbacks(wait_for_lock=0.2) == 1
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED


def test_many_callbacks_are_applied_in_one_batch_in_order(world, pulse):
    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.SENT)])
    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.DELIVERED)])
    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.READ)])
    # Late and out of order: ignored by the status machine, kept as an event.
    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.SENT, provider_status="late")])
    # The same report twice (a gateway's retry): one event.
    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.READ)])
    assert inbox.drain_callbacks() == 5
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.READ
    events = DeliveryEvent.objects.filter(delivery=world["delivery"], source="callback")
    assert sorted(events.values_list("provider_status", flat=True)) == [
        "delivered",
        "late",
        "read",
        "sent",
    ]


def test_a_callback_that_cannot_be_applied_is_kept_with_its_error_and_the_rest_go_through(
    world, pulse
):
    poison = inbox.store_callback(pulse.pk, [report("p-1", "no-such-status")])
    good = inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.DELIVERED)])
    assert inbox.drain_callbacks() == 1
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED
    assert not InboundCallback.objects.filter(pk=good).exists()
    kept = InboundCallback.objects.get(pk=poison)
    assert "no-such-status" in kept.error
    # A dead letter is not tried again and does not keep drainers busy.
    assert inbox.drain_callbacks() == 0


def test_a_drain_out_of_time_hands_the_rest_to_a_task(world, pulse, monkeypatch):
    handed_over = []
    monkeypatch.setattr(inbox, "_hand_over", lambda: handed_over.append(True))
    for status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ):
        inbox.store_callback(pulse.pk, [report("p-1", status)])
    assert inbox.drain_callbacks(seconds=0, batch_size=1) == 1
    assert handed_over == [True]
    assert InboundCallback.objects.count() == 2
    assert inbox.drain_callbacks(batch_size=1) == 2
    assert handed_over == [True]


def test_the_sweeper_applies_what_was_left_behind(world, pulse):
    from campaigns.services import sweep_once

    inbox.store_callback(pulse.pk, [report("p-1", DeliveryStatus.DELIVERED)])
    assert sweep_once()["callbacks"] == 1
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("seconds_since_boot", [5.0, 7 * 24 * 3600.0])
def test_under_load_a_process_applies_at_most_once_per_interval_and_kicks_a_task(
    client, world, pulse, settings, monkeypatch, request, seconds_since_boot
):
    settings.CASCADE_CALLBACK_DRAIN_INTERVAL = 3600
    # time.monotonic() counts from boot: a machine up for seconds, and one up for a week.
    monkeypatch.setattr(inbox.time, "monotonic", lambda: seconds_since_boot)
    # Reset after the test too: a fake time left behind would keep later webhooks from
    # applying inline.
    inbox.reset_inline_drain()
    request.addfinalizer(inbox.reset_inline_drain)
    kicked = []
    monkeypatch.setattr(inbox, "_hand_over", lambda: kicked.append(True))
    second = Delivery.objects.create(
        operator=world["operator"],
        message=world["delivery"].message,
        campaign=world["delivery"].campaign,
        step=1,
        channel="sms",
        account=pulse,
        idempotency_key="k2",
        status=DeliveryStatus.SENT,
        provider_message_id="p-2",
    )
    assert callback(client, pulse, "p-1").status_code == 200  # the first applies at once
    assert Delivery.objects.get(pk=world["delivery"].pk).status == DeliveryStatus.DELIVERED
    assert kicked == []
    assert callback(client, pulse, "p-2").status_code == 200  # within the interval: stored
    assert Delivery.objects.get(pk=second.pk).status == DeliveryStatus.SENT
    assert InboundCallback.objects.count() == 1
    assert kicked == [True]
    assert inbox.drain_callbacks() == 1  # what the task does
    assert Delivery.objects.get(pk=second.pk).status == DeliveryStatus.DELIVERED


def test_the_kick_enqueues_one_drain_task_per_second(world, monkeypatch):
    from django.core.cache import cache

    queued = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda name, **kwargs: queued.append((name, kwargs))
    )
    cache.delete("cascade:drain-callbacks")
    inbox._hand_over()
    inbox._hand_over()
    assert queued == [("providers.inbox.drain_callbacks", {"seconds": 30, "wait_for_lock": 5})]

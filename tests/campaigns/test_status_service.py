"""apply_status_events: idempotent, monotonic, bulk."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Delivery, DeliveryEvent, Message
from campaigns.statuses import apply_status_events
from providers.base import StatusEvent
from providers.models import ProviderAccount


@pytest.fixture
def sent(world):
    delivery = world["delivery"]
    delivery.provider_message_id = "P1"
    delivery.save()
    return delivery


def test_a_report_moves_the_delivery_forward_and_keeps_the_raw_payload(sent):
    event = StatusEvent(
        status="delivered",
        provider_status="deliver",
        provider_message_id="P1",
        price=Decimal("0.5"),
        currency="RUB",
        raw='{"state":"deliver"}',
    )
    assert apply_status_events(account_id=sent.account_id, events=[event], source="callback") == 1
    sent.refresh_from_db()
    assert (sent.status, sent.price, sent.currency) == ("delivered", Decimal("0.5"), "RUB")
    assert sent.delivered_at is not None and sent.final_at is not None
    stored = DeliveryEvent.objects.get(delivery=sent, source="callback")
    assert (stored.status, stored.provider_status, stored.payload) == (
        "delivered",
        "deliver",
        '{"state":"deliver"}',
    )


def test_the_same_report_twice_changes_nothing_the_second_time(sent):
    event = StatusEvent(status="delivered", provider_status="deliver", provider_message_id="P1")
    apply_status_events(account_id=sent.account_id, events=[event], source="callback")
    assert apply_status_events(account_id=sent.account_id, events=[event], source="callback") == 0
    assert DeliveryEvent.objects.filter(delivery=sent, source="callback").count() == 1


def test_a_late_sent_never_overwrites_delivered_but_read_still_counts(sent):
    account = sent.account_id
    apply_status_events(
        account_id=account, events=[StatusEvent("delivered", "deliver", "P1")], source="poll"
    )
    apply_status_events(
        account_id=account, events=[StatusEvent("sent", "send", "P1")], source="callback"
    )
    sent.refresh_from_db()
    assert sent.status == "delivered"
    apply_status_events(
        account_id=account, events=[StatusEvent("read", "read", "P1")], source="callback"
    )
    sent.refresh_from_db()
    assert sent.status == "read" and sent.read_at is not None


def test_reports_are_matched_by_idempotency_key_too(sent):
    event = StatusEvent(status="undeliverable", provider_status="not_deliver", idempotency_key="k1")
    apply_status_events(account_id=sent.account_id, events=[event], source="poll")
    sent.refresh_from_db()
    assert sent.status == "undeliverable"


def test_unknown_ids_and_other_accounts_are_ignored(sent, sunrise):
    other = ProviderAccount.objects.create(
        operator=sunrise, name="Other", backend="bsg", channels=["viber"]
    )
    events = [
        StatusEvent("delivered", "delivered", "NOPE"),
        StatusEvent("delivered", "delivered", "P1"),
    ]
    assert apply_status_events(account_id=other.pk, events=events, source="callback") == 0
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert not DeliveryEvent.objects.filter(source="callback").exists()


def test_another_channel_of_a_native_cascade_is_recorded_but_does_not_move_the_step(sent):
    event = StatusEvent(
        status="delivered", provider_status="deliver", provider_message_id="P1", channel="sms"
    )
    assert apply_status_events(account_id=sent.account_id, events=[event], source="poll") == 0
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert DeliveryEvent.objects.filter(delivery=sent, source="poll", status="delivered").exists()


def test_the_query_count_does_not_grow_with_the_number_of_reports(world):
    account, campaign, operator = world["provideraccount"], world["campaign"], world["operator"]

    def make(count, start):
        messages = Message.objects.bulk_create(
            [
                Message(operator=operator, campaign=campaign, recipient_key=f"r{start + i}")
                for i in range(count)
            ]
        )
        Delivery.objects.bulk_create(
            [
                Delivery(
                    operator=operator,
                    message=m,
                    campaign=campaign,
                    channel="sms",
                    account=account,
                    idempotency_key=f"s{m.pk}",
                    provider_message_id=f"X{m.pk}",
                    status="sent",
                )
                for m in messages
            ]
        )
        return [StatusEvent("delivered", "deliver", f"X{m.pk}") for m in messages]

    def queries(events):
        with CaptureQueriesContext(connection) as captured:
            assert apply_status_events(account_id=account.pk, events=events, source="poll") == len(
                events
            )
        return len(captured)

    assert queries(make(10, 0)) == queries(make(500, 1000))

"""Cascade's ClientEvent extension: partners' purchases, registrations and bonus changes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import triggers
from campaigns.models import Campaign, Message, MessageTemplate
from clients.models import Card, Client, ClientEvent
from config.lcmanager import codes
from tests.config.test_lcmanager_views import (  # noqa: F401 - fixtures
    answer,
    api,
    auth,
    fresh_cache_and_no_broker,
    post_json,
)

EVENT = "/api/client/ClientEvent"


def event(client, api, **fields):  # noqa: F811
    return post_json(client, EVENT, {**auth(api), **fields})


def test_a_purchase_moves_last_purchase_forward_only(client, api):  # noqa: F811
    customer = api["client"]
    response = event(
        client, api, Client=customer.pk, Event="purchase", OccurredAt="2026-12-07T10:15:00+03:00"
    )
    assert response.status_code == 200, response.content
    body = answer(response)
    assert int(body["ErrorCode"]) == 0 and int(body["EventId"]) > 0
    customer.refresh_from_db()
    assert customer.last_purchase_at == datetime(2026, 12, 7, 7, 15, tzinfo=UTC)
    event(client, api, Client=customer.pk, Event="Purchase", OccurredAt="2026-11-01T10:00:00Z")
    customer.refresh_from_db()
    assert customer.last_purchase_at == datetime(2026, 12, 7, 7, 15, tzinfo=UTC)
    assert ClientEvent.objects.filter(client=customer, kind="purchase").count() == 2


def test_a_bonus_event_sets_the_cards_balance_and_expiry_in_xml(client, api):  # noqa: F811
    card = Card.objects.create(operator=api["operator"], client=api["client"], number=777)
    body = (
        '<ClientEventRequest xmlns="http://schemas.datacontract.org/2004/07/Cascade.PartnerApi"'
        ' xmlns:a="http://schemas.datacontract.org/2004/07/LCManagerPartner.Implementation'
        '.Abstractions">'
        f"<Bonus>250.50</Bonus><BonusExpiresAt>2026-12-31T23:59:00+03:00</BonusExpiresAt>"
        f"<Card>777</Card><Client>{api['client'].pk}</Client><Event>bonus</Event>"
        f"<a:Operator>{api['operator'].pk}</a:Operator><a:Token>{api['token']}</a:Token>"
        "</ClientEventRequest>"
    )
    response = client.post(EVENT, data=body, content_type="application/xml")
    assert response.status_code == 200, response.content
    card.refresh_from_db()
    assert card.bonus == Decimal("250.50")
    assert card.bonus_expires_at == datetime(2026, 12, 31, 20, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "error", "text"),
    [
        ({"Event": "purchase"}, codes.INVALID_REQUEST, "Client is required"),
        ({"Client": 1, "Event": "refund"}, codes.INVALID_REQUEST, "Event must be one of"),
        (
            {"Client": 1, "Event": "purchase", "OccurredAt": "yesterday"},
            codes.INVALID_REQUEST,
            "ISO 8601",
        ),
        (
            {"Client": 1, "Event": "purchase", "OccurredAt": "2026-12-07T10:00:00"},
            codes.INVALID_REQUEST,
            "with an offset",
        ),
        ({"Client": 1, "Event": "bonus"}, codes.INVALID_REQUEST, "Card is required"),
        (
            {"Client": 1, "Event": "bonus", "Card": 1, "Bonus": -1},
            codes.INVALID_REQUEST,
            "Bonus must be from 0",
        ),
        (
            {"Client": 1, "Event": "bonus", "Card": 1, "Bonus": 1e15},
            codes.INVALID_REQUEST,
            "Bonus must be from 0",
        ),
        ({"Client": 999999, "Event": "purchase"}, codes.NOT_FOUND, "Client 999999 not found"),
    ],
)
def test_bad_events_are_refused_with_the_reason_and_write_nothing(client, api, fields, error, text):  # noqa: F811
    response = event(client, api, **fields)
    body = answer(response)
    assert (response.status_code, int(body["ErrorCode"])) == (error.http_status, error.code)
    assert text in body["Message"]
    assert not ClientEvent.objects.exists()


def test_another_operators_client_or_card_is_not_found(client, api, northwind):  # noqa: F811
    stranger = Client.objects.create(operator=northwind, phone="79990000001")
    response = event(client, api, Client=stranger.pk, Event="registration")
    assert int(answer(response)["ErrorCode"]) == codes.NOT_FOUND.code
    Card.objects.create(operator=northwind, client=stranger, number=555)
    response = event(client, api, Client=api["client"].pk, Event="bonus", Card=555)
    assert int(answer(response)["ErrorCode"]) == codes.NOT_FOUND.code
    assert not ClientEvent.objects.exists()


def test_a_partners_purchase_fires_the_purchase_trigger(client, api):  # noqa: F811
    now = timezone.now()
    template = MessageTemplate.objects.create(operator=api["operator"], name="T", text="Thanks")
    campaign = Campaign.objects.create(
        operator=api["operator"],
        name="Thanks",
        template=template,
        channels=["sms"],
        kind=Campaign.Kind.TRIGGER,
        trigger=Campaign.Trigger.PURCHASE,
        state=Campaign.State.RUNNING,
        launched_at=now - timedelta(hours=1),
    )
    event(client, api, Client=api["client"].pk, Event="purchase")
    assert triggers.run_pass(campaign.pk, timezone.now()) == 1
    assert Message.objects.get(campaign=campaign).client_id == api["client"].pk

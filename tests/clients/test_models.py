"""Database constraints reject bad rows, whoever writes them."""

from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, transaction

from campaigns.models import Campaign, Delivery, Message, MessageTemplate
from clients.models import ApiCredential, Card, Client, ConsentChange, Lead, PointOfSale
from providers.models import ChannelRoute, ProviderAccount
from tests.conftest import make_client


def rejected(create, because=""):
    """The database refuses the row; `because` names the constraint that must say so."""
    with pytest.raises((IntegrityError, DataError)) as error, transaction.atomic():
        create()
    assert because in str(error.value)


def test_it_rejects_a_duplicate_phone_within_an_operator(sunrise, northwind):
    make_client(sunrise, phone="79123456789")
    rejected(lambda: make_client(sunrise, phone="79123456789"), "client_phone_unique")
    make_client(northwind, phone="79123456789")  # another tenant may have the same person


def test_many_clients_may_have_no_phone(sunrise):
    make_client(sunrise, phone="", email="a@example.com")
    make_client(sunrise, phone="", email="b@example.com")
    assert Client.objects.filter(phone="").count() == 2


@pytest.mark.parametrize(
    "phone", ["+79123456789", "8 912 345 67 89", "0123456789", "12", "7912345678901234"]
)
def test_it_rejects_a_malformed_phone(sunrise, phone):
    rejected(lambda: make_client(sunrise, phone=phone))


def test_it_rejects_a_negative_bonus_and_a_duplicate_card(sunrise):
    Card.objects.create(operator=sunrise, number=5001, bonus=Decimal("0"))
    rejected(
        lambda: Card.objects.create(operator=sunrise, number=5002, bonus=Decimal("-0.01")),
        "card_bonus_not_negative",
    )
    rejected(lambda: Card.objects.create(operator=sunrise, number=5001), "card_number_unique")
    rejected(lambda: Card.objects.create(operator=sunrise, number=0), "card_number_positive")


def test_it_rejects_duplicate_pos_codes_within_an_operator(sunrise, northwind):
    PointOfSale.objects.create(operator=sunrise, code="A1", name="A")
    rejected(
        lambda: PointOfSale.objects.create(operator=sunrise, code="A1", name="B"), "pos_code_unique"
    )
    PointOfSale.objects.create(operator=northwind, code="A1", name="A")


def test_consent_history_rows_must_change_something(sunrise):
    client = make_client(sunrise)
    rejected(
        lambda: ConsentChange.objects.create(
            operator=sunrise,
            client=client,
            flag="allow_sms",
            old_value=True,
            new_value=True,
            source="api",
        ),
        "consent_change_changes_something",
    )
    rejected(
        lambda: ConsentChange.objects.create(
            operator=sunrise,
            client=client,
            flag="allow_fax",
            old_value=False,
            new_value=True,
            source="api",
        ),
        "consent_change_flag_valid",
    )


def test_consent_history_is_append_only(sunrise):
    client = make_client(sunrise)
    change = ConsentChange.objects.create(
        operator=sunrise,
        client=client,
        flag="allow_sms",
        old_value=False,
        new_value=True,
        source="api",
    )
    change.reason = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        change.save()
    with pytest.raises(ValueError, match="append-only"):
        change.delete()


def test_a_lead_needs_a_phone_or_an_email(sunrise):
    rejected(
        lambda: Lead.objects.create(operator=sunrise, name="Nobody"), "lead_has_phone_or_email"
    )
    Lead.objects.create(operator=sunrise, email="lead@example.com")


def test_credential_digests_are_unique(sunrise):
    ApiCredential.objects.create(
        operator=sunrise, name="a", secret_digest="f" * 64, secret_hint="ffff"
    )
    rejected(
        lambda: ApiCredential.objects.create(
            operator=sunrise, name="b", secret_digest="f" * 64, secret_hint="x"
        ),
        "apicredential_secret_digest_key",
    )


def test_provider_accounts_need_a_known_backend_and_sane_numbers(sunrise):
    def account(**fields):
        values = {"operator": sunrise, "name": "x", "backend": "bsg", "channels": ["viber"]}
        values.update(fields)
        return ProviderAccount.objects.create(**values)

    rejected(lambda: account(backend="carrier-pigeon"), "provider_account_backend_known")
    rejected(lambda: account(max_batch=0), "provider_account_batch_positive")
    rejected(lambda: account(cost_per_part=Decimal("-1")), "provider_account_cost")
    account()
    rejected(lambda: account(), "provider_account_name_unique")


def test_routes_have_one_account_per_priority(sunrise):
    first = ProviderAccount.objects.create(
        operator=sunrise, name="a", backend="bsg", channels=["sms"]
    )
    second = ProviderAccount.objects.create(
        operator=sunrise, name="b", backend="pulse", channels=["sms"]
    )
    ChannelRoute.objects.create(operator=sunrise, channel="sms", account=first, priority=1)
    rejected(
        lambda: ChannelRoute.objects.create(
            operator=sunrise, channel="sms", account=second, priority=1
        ),
        "route_priority_unique",
    )
    rejected(
        lambda: ChannelRoute.objects.create(
            operator=sunrise, channel="sms", account=first, priority=2
        ),
        "route_account_unique",
    )
    rejected(
        lambda: ChannelRoute.objects.create(
            operator=sunrise, channel="fax", account=second, priority=2
        ),
        "route_channel_valid",
    )


def test_templates_enforce_viber_rules(sunrise):
    def template(**fields):
        name = f"t{len(fields)}-{sorted(fields)}"
        return MessageTemplate.objects.create(operator=sunrise, name=name, text="hi", **fields)

    rejected(lambda: template(viber_text="x" * 1001), "template_viber_text_max")
    rejected(lambda: template(button_caption="Open"), "template_button_needs_caption_and_url")
    rejected(lambda: template(button_url="https://example.com"), "template_button_needs")
    rejected(lambda: template(image_url="https://example.com/a.png"), "template_image_needs_button")
    rejected(
        lambda: MessageTemplate.objects.create(operator=sunrise, name="empty"),
        "template_has_content",
    )
    template(
        viber_text="x" * 1000,
        button_caption="Open",
        button_url="https://example.com",
        image_url="https://example.com/a.png",
    )


def test_campaign_invariants(sunrise):
    tpl = MessageTemplate.objects.create(operator=sunrise, name="t", text="hi")

    def campaign(**fields):
        return Campaign.objects.create(
            operator=sunrise, name="c", template=tpl, channels=["sms"], **fields
        )

    rejected(lambda: campaign(state="exploded"), "campaign_state_valid")
    rejected(lambda: campaign(ttl_minutes=0), "campaign_ttl_positive")
    import datetime

    rejected(lambda: campaign(send_window_start=datetime.time(9)), "campaign_send_window_complete")
    campaign(send_window_start=datetime.time(9), send_window_end=datetime.time(21))


def test_one_message_per_recipient_per_campaign_and_one_delivery_per_step(sunrise):
    tpl = MessageTemplate.objects.create(operator=sunrise, name="t", text="hi")
    campaign = Campaign.objects.create(operator=sunrise, name="c", template=tpl, channels=["sms"])
    message = Message.objects.create(
        operator=sunrise, campaign=campaign, recipient_key="phone:79123456789"
    )
    rejected(
        lambda: Message.objects.create(
            operator=sunrise, campaign=campaign, recipient_key="phone:79123456789"
        ),
        "message_recipient_unique_per_campaign",
    )
    # One-off partner messages have no campaign and no such limit.
    Message.objects.create(operator=sunrise, recipient_key="phone:79123456789")
    Message.objects.create(operator=sunrise, recipient_key="phone:79123456789")

    Delivery.objects.create(
        operator=sunrise, message=message, step=0, channel="sms", idempotency_key="a1"
    )
    rejected(
        lambda: Delivery.objects.create(
            operator=sunrise, message=message, step=0, channel="sms", idempotency_key="a2"
        ),
        "delivery_step_unique",
    )
    rejected(
        lambda: Delivery.objects.create(
            operator=sunrise, message=message, step=1, channel="sms", idempotency_key="a1"
        ),
        "idempotency_key_key",
    )
    rejected(
        lambda: Delivery.objects.create(
            operator=sunrise, message=message, step=1, channel="sms", idempotency_key="has-dash"
        ),
        "delivery_idempotency_key_alnum",
    )
    rejected(
        lambda: Delivery.objects.create(
            operator=sunrise,
            message=message,
            step=1,
            channel="sms",
            idempotency_key="b1",
            status="teleported",
        ),
        "delivery_status_valid",
    )
